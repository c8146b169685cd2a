"""Shapes of the API's JSON.

Output serializers render models. Request serializers document request bodies
in the OpenAPI schema; the rules themselves live in runs.services, which every
entry point (API, pages, CLI through the API) shares.
"""

from __future__ import annotations

from django.urls import reverse
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from runs import limits
from runs.models import ApiToken, ComputeTarget, Experiment, LogFile, Run, RunEvent, RunFile, Workspace
from runs.models.compute import COMPUTE_NAME_RE
from runs.presenters import run_duration
from runs.services.metrics import BATCH_ID_RE
from runs.services.runs import RUN_ID_RE

_kv = serializers.DictField(child=serializers.CharField(allow_null=True, allow_blank=True))


@extend_schema_field(
    {
        "oneOf": [{"type": "string", "maxLength": limits.VALUE_MAX}, {"type": "number"}, {"type": "boolean"}],
        "nullable": True,
    }
)
class LabelValueField(serializers.JSONField):
    """A tag or property value as sent: numbers and booleans are stored as text, as the v1 SDK does."""


def _kv_in(**kwargs) -> serializers.DictField:
    return serializers.DictField(child=LabelValueField(), **kwargs)


# Raw schemas for bodies that are one object of key → value (drf-spectacular cannot name a bare DictField).
# All of a run's tags (or properties): null for a tag set without a value.
LABELS = {"type": "object", "additionalProperties": {"type": "string", "nullable": True}}
# Tags or properties to set: text, or a number or boolean (stored as text), or null (tags).
LABELS_IN = {"type": "object", "additionalProperties": LabelValueField._spectacular_annotation["field"]}


class WorkspaceSerializer(serializers.ModelSerializer):
    class Meta:
        model = Workspace
        fields = ["name", "description", "default_compute_target", "created_at"]


class ExperimentSerializer(serializers.ModelSerializer):
    workspace = serializers.CharField(source="workspace.name")
    run_count = serializers.IntegerField(source="last_run_number")

    class Meta:
        model = Experiment
        fields = ["name", "workspace", "description", "run_count", "created_at", "last_activity_at"]


class ComputeTargetSerializer(serializers.ModelSerializer):
    workspace = serializers.CharField(source="workspace.name", read_only=True)

    class Meta:
        model = ComputeTarget
        fields = ["name", "workspace", "kind", "max_concurrent_runs", "description", "created_at"]


class ComputeTargetWriteSerializer(serializers.Serializer):
    name = serializers.RegexField(COMPUTE_NAME_RE, required=False)
    kind = serializers.ChoiceField(choices=ComputeTarget.Kind.values, required=False)
    max_concurrent_runs = serializers.IntegerField(min_value=1, max_value=10000, required=False)
    description = serializers.CharField(required=False, allow_blank=True)


def _iso(value) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


class RunSerializer(serializers.ModelSerializer):
    """A run as lists and details show it (snake_case; the SDK maps it to v1's camelCase)."""

    experiment = serializers.CharField(source="experiment.name")
    workspace = serializers.CharField(source="experiment.workspace.name")
    parent_run_id = serializers.SerializerMethodField()
    submitted_by = serializers.SerializerMethodField()
    created_utc = serializers.SerializerMethodField()
    start_time_utc = serializers.SerializerMethodField()
    end_time_utc = serializers.SerializerMethodField()
    duration_seconds = serializers.SerializerMethodField()
    tags = serializers.SerializerMethodField()
    properties = serializers.SerializerMethodField()
    url = serializers.SerializerMethodField()

    class Meta:
        model = Run
        fields = [
            "run_id",
            "number",
            "display_name",
            "description",
            "status",
            "run_type",
            "experiment",
            "workspace",
            "parent_run_id",
            "compute_target",
            "submitted_by",
            "created_utc",
            "start_time_utc",
            "end_time_utc",
            "duration_seconds",
            "tags",
            "properties",
            "error",
            "run_definition",
            "exit_code",
            "url",
        ]

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_parent_run_id(self, run: Run) -> str | None:
        return run.parent.run_id if run.parent_id else None

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_submitted_by(self, run: Run) -> str | None:
        return run.submitted_by.username if run.submitted_by_id else None

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_created_utc(self, run: Run) -> str | None:
        return _iso(run.created_at)

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_start_time_utc(self, run: Run) -> str | None:
        return _iso(run.started_at)

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_end_time_utc(self, run: Run) -> str | None:
        return _iso(run.ended_at)

    @extend_schema_field(serializers.FloatField(allow_null=True))
    def get_duration_seconds(self, run: Run) -> float | None:
        duration = run_duration(run)
        return round(duration.total_seconds(), 3) if duration is not None else None

    @extend_schema_field(_kv)
    def get_tags(self, run: Run) -> dict:
        return {t.key: t.value for t in sorted(run.tag_set.all(), key=lambda t: t.pk)}

    @extend_schema_field(_kv)
    def get_properties(self, run: Run) -> dict:
        return {p.key: p.value for p in sorted(run.property_set.all(), key=lambda p: p.pk)}

    def get_url(self, run: Run) -> str:
        return reverse("runs:run", args=[run.run_id])


def run_summary(run: Run, tags: dict | None = None, properties: dict | None = None) -> dict:
    """RunSerializer's output, built in one pass (lists of up to 500 runs, create_children's answer).

    DRF renders field by field at tens of microseconds each, which dominated a
    page of runs. `run` needs experiment__workspace, parent and submitted_by
    loaded and tag_set/property_set prefetched (selectors.with_labels), unless
    `tags`/`properties` are given. tests/test_api_runs.py keeps this equal to
    RunSerializer, which stays the schema.
    """
    duration = run_duration(run)
    if tags is None:
        tags = {t.key: t.value for t in sorted(run.tag_set.all(), key=lambda t: t.pk)}
    if properties is None:
        properties = {p.key: p.value for p in sorted(run.property_set.all(), key=lambda p: p.pk)}
    return {
        "run_id": run.run_id,
        "number": run.number,
        "display_name": run.display_name,
        "description": run.description,
        "status": run.status,
        "run_type": run.run_type,
        "experiment": run.experiment.name,
        "workspace": run.experiment.workspace.name,
        "parent_run_id": run.parent.run_id if run.parent_id else None,
        "compute_target": run.compute_target,
        "submitted_by": run.submitted_by.username if run.submitted_by_id else None,
        "created_utc": _iso(run.created_at),
        "start_time_utc": _iso(run.started_at),
        "end_time_utc": _iso(run.ended_at),
        "duration_seconds": round(duration.total_seconds(), 3) if duration is not None else None,
        "tags": tags,
        "properties": properties,
        "error": run.error,
        "run_definition": run.run_definition,
        "exit_code": run.exit_code,
        "url": reverse("runs:run", args=[run.run_id]),
    }


def new_run_summary(run: Run) -> dict:
    """run_summary of a run just created by runs.services.runs._new_runs, without reading it back."""
    return run_summary(run, dict(run.created_tags), dict(run.created_properties))


class RunDetailSerializer(RunSerializer):
    root_run_id = serializers.SerializerMethodField()
    log_files = serializers.SerializerMethodField()
    warnings = serializers.JSONField()

    class Meta(RunSerializer.Meta):
        fields = [*RunSerializer.Meta.fields, "root_run_id", "log_files", "warnings"]

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_root_run_id(self, run: Run) -> str | None:
        if run.root_id is None:
            return None
        return Run.objects.values_list("run_id", flat=True).get(pk=run.root_id)

    @extend_schema_field(serializers.ListField(child=serializers.CharField()))
    def get_log_files(self, run: Run) -> list[str]:
        return list(LogFile.objects.filter(run=run).order_by("name").values_list("name", flat=True))


class RunPageSerializer(serializers.Serializer):
    results = RunSerializer(many=True)
    continuation = serializers.CharField(allow_null=True)


class RunCreateSerializer(serializers.Serializer):
    run_id = serializers.RegexField(RUN_ID_RE.pattern, required=False)
    # null means "none", as "" does (runs.limits.check_text)
    display_name = serializers.CharField(required=False, allow_blank=True, allow_null=True)
    description = serializers.CharField(required=False, allow_blank=True, allow_null=True)
    tags = _kv_in(required=False, allow_null=True)
    properties = _kv_in(required=False, allow_null=True)
    heartbeat_timeout_seconds = serializers.FloatField(required=False, allow_null=True)


class ChildrenCreateSerializer(serializers.Serializer):
    count = serializers.IntegerField(required=False, min_value=1, max_value=10000)
    tag_key = serializers.CharField(required=False)
    tag_values = serializers.ListField(child=LabelValueField(), required=False)
    children = RunCreateSerializer(many=True, required=False)


@extend_schema_field({"oneOf": [{"type": "string"}, {"type": "number"}]})
class ArgumentField(serializers.JSONField):
    """A script argument: text (empty allowed, as on a command line) or a number, passed as text."""


class SubmitSerializer(serializers.Serializer):
    snapshot = serializers.CharField(help_text="sha256 of an uploaded snapshot")
    script = serializers.CharField(required=False, allow_null=True)
    command = serializers.JSONField(required=False, allow_null=True, help_text="string or list of strings")
    # null means none for every optional field here (runs.limits.null_as)
    arguments = serializers.ListField(child=ArgumentField(), required=False, allow_null=True)
    compute_target = serializers.CharField(required=False, allow_null=True)
    environment_variables = serializers.DictField(child=serializers.CharField(), required=False, allow_null=True)
    max_run_duration_seconds = serializers.IntegerField(required=False, allow_null=True)
    cancel_grace_seconds = serializers.FloatField(required=False, allow_null=True)
    display_name = serializers.CharField(required=False, allow_blank=True, allow_null=True)
    description = serializers.CharField(required=False, allow_blank=True, allow_null=True)
    tags = _kv_in(required=False, allow_null=True)
    parent_run_id = serializers.CharField(required=False, allow_null=True)


class RunUpdateSerializer(serializers.Serializer):
    # null clears a field, as "" does (runs.limits.check_text)
    display_name = serializers.CharField(required=False, allow_blank=True, allow_null=True, max_length=255)
    description = serializers.CharField(required=False, allow_blank=True, allow_null=True, max_length=5000)


class FailSerializer(serializers.Serializer):
    error_details = serializers.JSONField(
        required=False, allow_null=True, help_text="a message, or an object with message"
    )
    error_code = serializers.CharField(
        required=False, allow_null=True, allow_blank=True, max_length=limits.KEY_MAX, help_text="default UserError"
    )


class TagsRemoveSerializer(serializers.Serializer):
    keys = serializers.ListField(child=serializers.CharField(allow_blank=True), help_text="absent keys are ignored")


class MetricSeriesInSerializer(serializers.Serializer):
    name = serializers.CharField()
    kind = serializers.ChoiceField(choices=["scalar", "list", "row", "table", "image"], default="scalar")
    description = serializers.CharField(required=False, allow_blank=True, allow_null=True)
    values = serializers.ListField(child=serializers.JSONField())
    times = serializers.ListField(child=serializers.FloatField())
    steps = serializers.ListField(child=serializers.IntegerField(allow_null=True), required=False, allow_null=True)


class MetricBatchSerializer(serializers.Serializer):
    batch_id = serializers.RegexField(BATCH_ID_RE.pattern, help_text="a repeated batch_id is not stored twice")
    series = MetricSeriesInSerializer(many=True)


class MetricBatchResultSerializer(serializers.Serializer):
    batch_id = serializers.CharField()
    stored = serializers.IntegerField()
    duplicate = serializers.BooleanField()


class MetricPointsSerializer(serializers.Serializer):
    name = serializers.CharField()
    total = serializers.IntegerField()
    steps = serializers.ListField(child=serializers.IntegerField())
    times = serializers.ListField(child=serializers.FloatField())
    values = serializers.ListField(child=serializers.JSONField())
    x = serializers.ListField(child=serializers.FloatField(), required=False)
    downsampled = serializers.BooleanField()


class LogFileSerializer(serializers.ModelSerializer):
    class Meta:
        model = LogFile
        fields = ["name", "size", "updated_at"]


class LogAppendResultSerializer(serializers.Serializer):
    name = serializers.CharField()
    size = serializers.IntegerField()
    stored = serializers.IntegerField()


class RunFileSerializer(serializers.ModelSerializer):
    class Meta:
        model = RunFile
        fields = ["path", "size", "sha256", "content_type", "origin", "created_at"]


class RunEventSerializer(serializers.ModelSerializer):
    actor = serializers.CharField(source="actor.username", default=None, allow_null=True, help_text="null: the system")

    class Meta:
        model = RunEvent
        fields = ["at", "from_status", "to_status", "actor", "reason"]


class RunnerInstructionsSerializer(serializers.Serializer):
    status = serializers.CharField()
    stop = serializers.CharField(allow_blank=True)
    grace_seconds = serializers.FloatField()
    heartbeat_seconds = serializers.FloatField(help_text="how often the runner should heartbeat")


class RunnerExitSerializer(serializers.Serializer):
    exit_code = serializers.IntegerField(allow_null=True)
    reason = serializers.CharField(required=False, allow_blank=True, allow_null=True)
    log_tail = serializers.CharField(required=False, allow_blank=True, allow_null=True)
    timed_out = serializers.BooleanField(required=False, allow_null=True)


class SnapshotSerializer(serializers.Serializer):
    sha256 = serializers.CharField()
    size = serializers.IntegerField()
    file_count = serializers.IntegerField()


class TokenSerializer(serializers.ModelSerializer):
    class Meta:
        model = ApiToken
        fields = ["id", "name", "prefix", "created_at", "last_used_at", "revoked_at"]


class MeSerializer(serializers.Serializer):
    username = serializers.CharField()
    workspaces = serializers.ListField(child=serializers.CharField())
    run_id = serializers.CharField(allow_null=True, help_text="set when authenticated with a run token")
