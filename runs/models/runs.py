from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models.functions import Lower

from runs.lifecycle import Status
from runs.models.experiments import Experiment


class Snapshot(models.Model):
    """A content-addressed zip of a submitted source folder, stored once per workspace."""

    workspace = models.ForeignKey("runs.Workspace", on_delete=models.CASCADE, related_name="snapshots")
    sha256 = models.CharField(max_length=64)
    size = models.BigIntegerField()
    file_count = models.PositiveIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["workspace", "sha256"], name="snapshot_unique_sha")]

    def __str__(self) -> str:
        return self.sha256[:12]


class Run(models.Model):
    class Type(models.TextChoices):
        INTERACTIVE = "interactive"  # started from the SDK (start_logging, child_run)
        SUBMITTED = "submitted"  # a script dispatched to a compute target; status is system-managed

    class StopRequest(models.TextChoices):
        NONE = ""
        CANCEL = "cancel"
        FAIL = "fail"

    run_id = models.CharField(max_length=255, unique=True)
    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="runs")
    number = models.PositiveIntegerField()
    display_name = models.CharField(max_length=255, blank=True, default="")
    description = models.TextField(blank=True, default="")
    run_type = models.CharField(max_length=16, choices=Type.choices, default=Type.INTERACTIVE)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.NOT_STARTED)

    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.CASCADE, related_name="children")
    root = models.ForeignKey("self", null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    # "/<root pk>/.../<own pk>/": descendants are a prefix match, ancestors are in it.
    path = models.CharField(max_length=2000, blank=True, default="")
    depth = models.PositiveSmallIntegerField(default=0)

    compute_target = models.CharField(max_length=64, default="local")
    submitted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    status_changed_at = models.DateTimeField(auto_now_add=True)
    error = models.JSONField(null=True, blank=True)
    warnings = models.JSONField(default=list, blank=True)
    run_definition = models.JSONField(default=dict, blank=True)
    snapshot = models.ForeignKey(Snapshot, null=True, blank=True, on_delete=models.PROTECT, related_name="runs")

    # Liveness: runners (and SDK processes) heartbeat; None means nobody promised to.
    last_heartbeat_at = models.DateTimeField(null=True, blank=True)
    heartbeat_timeout_seconds = models.FloatField(null=True, blank=True)

    # Dispatch and supervision of submitted runs.
    token_hash = models.CharField(max_length=64, blank=True, default="", db_index=True)
    host = models.CharField(max_length=255, blank=True, default="")
    runner_pid = models.PositiveIntegerField(null=True, blank=True)
    dispatched_at = models.DateTimeField(null=True, blank=True)
    stop_request = models.CharField(max_length=8, choices=StopRequest.choices, blank=True, default="")
    cancel_grace_seconds = models.FloatField(default=10.0)
    max_run_duration_seconds = models.PositiveIntegerField(null=True, blank=True)
    exit_code = models.IntegerField(null=True, blank=True)
    # Soft deletion (MLflow's delete/restore): hidden from lists, kept for restore.
    deleted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["experiment", "number"], name="run_unique_number")]
        indexes = [
            # Run lists page newest-first by id (keyset), top-level runs or one parent's children.
            models.Index(fields=["experiment", "parent", "-id"], name="run_exp_parent_id"),
            models.Index(fields=["experiment", "-number"], name="run_exp_number"),
            models.Index(fields=["experiment", "status"], name="run_exp_status"),
            models.Index(fields=["root", "path"], name="run_root_path"),
            models.Index(fields=["status", "compute_target"], name="run_status_target"),
            models.Index(Lower("display_name"), name="run_display_name_lower"),
        ]

    def __str__(self) -> str:
        return self.run_id

    @property
    def tree_root_pk(self) -> int:
        return self.root_id or self.pk

    @property
    def ancestor_pks(self) -> list[int]:
        return [int(p) for p in self.path.strip("/").split("/")[:-1] if p]

    @property
    def is_managed(self) -> bool:
        """Submitted runs' statuses follow their process, not client calls."""
        return self.run_type == self.Type.SUBMITTED


class RunTag(models.Model):
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="tag_set")
    key = models.CharField(max_length=255)
    value = models.TextField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["run", "key"], name="runtag_unique_key")]
        indexes = [models.Index(fields=["key", "value"], name="runtag_key_value")]


class RunProperty(models.Model):
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="property_set")
    key = models.CharField(max_length=255)
    value = models.TextField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["run", "key"], name="runproperty_unique_key")]
        indexes = [models.Index(fields=["key", "value"], name="runproperty_key_value")]
        verbose_name_plural = "run properties"


class RunEvent(models.Model):
    """Audit trail of status changes: who or what moved a run, when, and why."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="events")
    at = models.DateTimeField()
    from_status = models.CharField(max_length=20, blank=True, default="")
    to_status = models.CharField(max_length=20)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    reason = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["at", "pk"]
        indexes = [models.Index(fields=["run", "at"], name="runevent_run_at")]
