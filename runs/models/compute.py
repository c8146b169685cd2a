from __future__ import annotations

from django.core.validators import MinValueValidator, RegexValidator
from django.db import models

from runs.models.workspaces import Workspace

COMPUTE_NAME_RE = r"^[a-zA-Z0-9][a-zA-Z0-9\-]{1,31}$"


class ComputeTarget(models.Model):
    """Where submitted runs execute. Its name is also its Celery queue."""

    class Kind(models.TextChoices):
        LOCAL = "local", "local (processes on the worker's host)"

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="compute_targets")
    name = models.CharField(
        max_length=32,
        validators=[RegexValidator(COMPUTE_NAME_RE, "2-32 letters, digits or '-', starting with a letter or digit")],
    )
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.LOCAL)
    max_concurrent_runs = models.PositiveIntegerField(default=4, validators=[MinValueValidator(1)])
    description = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["workspace", "name"], name="compute_unique_name")]

    def __str__(self) -> str:
        return f"{self.name} ({self.kind})"

    @property
    def queue(self) -> str:
        return self.name


class WorkerHost(models.Model):
    """A worker process's last sign of life, written by its host monitor.

    The poller only declares a run's host lost when both the run's heartbeats
    and its host's monitor have gone quiet, so a web outage (no heartbeats can
    arrive) never fails healthy runs.
    """

    hostname = models.CharField(max_length=255)
    queue = models.CharField(max_length=64)
    pid = models.PositiveIntegerField()
    last_seen_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["hostname", "queue", "pid"], name="workerhost_unique")]
