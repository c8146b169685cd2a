from django.contrib import admin

from runs import models as m


class MembershipInline(admin.TabularInline):
    model = m.Membership
    extra = 0


@admin.register(m.Workspace)
class WorkspaceAdmin(admin.ModelAdmin):
    list_display = ["name", "default_compute_target", "created_at"]
    search_fields = ["name"]
    inlines = [MembershipInline]


@admin.register(m.Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["workspace", "user", "role"]
    list_filter = ["role"]


@admin.register(m.ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ["name", "user", "prefix", "created_at", "last_used_at", "revoked_at"]
    readonly_fields = ["key_hash", "prefix", "created_at", "last_used_at"]


@admin.register(m.Experiment)
class ExperimentAdmin(admin.ModelAdmin):
    list_display = ["name", "workspace", "last_run_number", "last_activity_at"]
    list_filter = ["workspace"]
    search_fields = ["name"]


@admin.register(m.ComputeTarget)
class ComputeTargetAdmin(admin.ModelAdmin):
    list_display = ["name", "workspace", "kind", "max_concurrent_runs"]
    list_filter = ["workspace", "kind"]


@admin.register(m.WorkerHost)
class WorkerHostAdmin(admin.ModelAdmin):
    list_display = ["hostname", "queue", "pid", "last_seen_at"]


class RunTagInline(admin.TabularInline):
    model = m.RunTag
    extra = 0


class RunPropertyInline(admin.TabularInline):
    model = m.RunProperty
    extra = 0

    def has_change_permission(self, request, obj=None):
        return False  # properties are immutable


@admin.register(m.Run)
class RunAdmin(admin.ModelAdmin):
    list_display = ["run_id", "experiment", "number", "status", "compute_target", "submitted_by", "created_at"]
    list_filter = ["status", "run_type", "compute_target"]
    search_fields = ["run_id", "display_name"]
    raw_id_fields = ["parent", "root", "experiment", "snapshot", "submitted_by"]
    readonly_fields = ["token_hash", "path", "status"]
    inlines = [RunTagInline, RunPropertyInline]


@admin.register(m.RunEvent)
class RunEventAdmin(admin.ModelAdmin):
    list_display = ["run", "at", "from_status", "to_status", "actor", "reason"]
    raw_id_fields = ["run"]


@admin.register(m.Snapshot)
class SnapshotAdmin(admin.ModelAdmin):
    list_display = ["sha256", "workspace", "size", "file_count", "created_at"]


@admin.register(m.MetricSeries)
class MetricSeriesAdmin(admin.ModelAdmin):
    list_display = ["name", "run", "kind", "count", "last_value"]
    raw_id_fields = ["run"]
    search_fields = ["name"]


@admin.register(m.MetricChunk)
class MetricChunkAdmin(admin.ModelAdmin):
    list_display = ["series", "seq", "count", "first_step", "last_step"]
    raw_id_fields = ["series"]
    exclude = ["steps", "times", "values", "types"]


@admin.register(m.MetricEntry)
class MetricEntryAdmin(admin.ModelAdmin):
    list_display = ["series", "seq", "logged_at"]
    raw_id_fields = ["series"]


@admin.register(m.MetricBatch)
class MetricBatchAdmin(admin.ModelAdmin):
    list_display = ["run", "batch_id", "points", "received_at"]
    raw_id_fields = ["run"]


@admin.register(m.LogFile)
class LogFileAdmin(admin.ModelAdmin):
    list_display = ["run", "name", "size", "updated_at"]
    raw_id_fields = ["run"]


@admin.register(m.RunFile)
class RunFileAdmin(admin.ModelAdmin):
    list_display = ["run", "path", "size", "origin", "created_at"]
    raw_id_fields = ["run"]


@admin.register(m.SavedView)
class SavedViewAdmin(admin.ModelAdmin):
    list_display = ["name", "experiment", "workspace", "updated_by", "updated_at"]
