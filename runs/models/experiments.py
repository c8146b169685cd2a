from __future__ import annotations

from django.core.validators import RegexValidator
from django.db import models

from runs.models.workspaces import Workspace

EXPERIMENT_NAME_RE = r"^[a-zA-Z0-9][a-zA-Z0-9_\-]{0,254}$"  # ASCII only: the OpenAPI (ECMA) pattern reads \w as ASCII


class Experiment(models.Model):
    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="experiments")
    name = models.CharField(
        max_length=255,
        validators=[
            RegexValidator(EXPERIMENT_NAME_RE, "1-255 letters, digits, '_' or '-', not starting with '_' or '-'")
        ],
    )
    description = models.TextField(blank=True, default="")
    # Run numbers are handed out from this counter under a row lock.
    last_run_number = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    last_activity_at = models.DateTimeField(auto_now_add=True)
    archived_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["workspace", "name"], name="experiment_unique_name")]

    def __str__(self) -> str:
        return f"{self.workspace.name}/{self.name}"
