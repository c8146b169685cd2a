from __future__ import annotations

from django.db import models

from runs.models.runs import Run


class LogFile(models.Model):
    """An append-only log of a run; the bytes live on disk under LOG_DIR/<run pk>/."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="log_files")
    name = models.CharField(max_length=255)
    size = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["run", "name"], name="logfile_unique_name")]

    def __str__(self) -> str:
        return f"{self.run_id}:{self.name}"


class RunFile(models.Model):
    """A file uploaded to a run (outputs, upload_file, images); bytes under ARTIFACT_DIR."""

    class Origin(models.TextChoices):
        UPLOAD = "upload"
        OUTPUTS = "outputs"
        IMAGE = "image"

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="files")
    path = models.CharField(max_length=1024)
    size = models.BigIntegerField()
    sha256 = models.CharField(max_length=64)
    content_type = models.CharField(max_length=100, blank=True, default="")
    origin = models.CharField(max_length=8, choices=Origin.choices, default=Origin.UPLOAD)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["path"]
        constraints = [models.UniqueConstraint(fields=["run", "path"], name="runfile_unique_path")]

    def __str__(self) -> str:
        return f"{self.run_id}:{self.path}"
