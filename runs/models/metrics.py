from __future__ import annotations

from django.db import models

from runs.models.runs import Run


class MetricSeries(models.Model):
    """One named metric of a run. Scalars live in packed chunks, the rest as entries."""

    class Kind(models.TextChoices):
        SCALAR = "scalar"
        LIST = "list"
        ROW = "row"
        TABLE = "table"
        IMAGE = "image"

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="metric_series")
    name = models.CharField(max_length=255)
    kind = models.CharField(max_length=8, choices=Kind.choices)
    description = models.TextField(blank=True, default="")
    count = models.BigIntegerField(default=0)
    # The newest scalar point, kept here so run tables and filters need no chunk reads.
    last_step = models.BigIntegerField(null=True, blank=True)
    last_value = models.FloatField(null=True, blank=True)
    last_value_json = models.JSONField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["run", "name"], name="metricseries_unique_name")]
        verbose_name_plural = "metric series"

    def __str__(self) -> str:
        return f"{self.run_id}:{self.name}"


class MetricChunk(models.Model):
    """Scalar points of one series, packed as little-endian arrays.

    One row holds every point of one series from one batch, so ingesting 10,000
    points is one INSERT and reading a 1,000,000-point series is a few hundred
    rows decoded with numpy. `types` is empty when every value is a float;
    otherwise one byte per point (see runs.metrics_codec). Text values live in
    `texts` keyed by their index in the chunk.
    """

    series = models.ForeignKey(MetricSeries, on_delete=models.CASCADE, related_name="chunks")
    seq = models.PositiveIntegerField()
    count = models.PositiveIntegerField()
    first_step = models.BigIntegerField()
    last_step = models.BigIntegerField()
    steps = models.BinaryField()
    # Steps are first_step, first_step+1, ...: charts rebuild them instead of reading `steps`.
    steps_contiguous = models.BooleanField(default=False)
    times = models.BinaryField()
    values = models.BinaryField()
    types = models.BinaryField(blank=True, default=b"")
    texts = models.JSONField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["series", "seq"], name="metricchunk_unique_seq")]


class MetricEntry(models.Model):
    """A list, row, table or image metric value, in logging order."""

    series = models.ForeignKey(MetricSeries, on_delete=models.CASCADE, related_name="entries")
    seq = models.PositiveIntegerField()
    value = models.JSONField()
    logged_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["series", "seq"], name="metricentry_unique_seq")]
        verbose_name_plural = "metric entries"


class MetricBatch(models.Model):
    """Batch ids already stored for a run: a retried batch is acknowledged, not stored twice."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="+")
    batch_id = models.CharField(max_length=64)
    points = models.PositiveIntegerField()
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["run", "batch_id"], name="metricbatch_unique")]
        verbose_name_plural = "metric batches"
