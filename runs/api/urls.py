from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from runs.api import views as v

W = "workspaces/<str:workspace>"
E = f"{W}/experiments/<str:experiment>"
R = "runs/<str:run_id>"

urlpatterns = [
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    # The split view serves its start-up script from this origin: the pages' CSP allows no inline script.
    path("docs/", SpectacularSwaggerSplitView.as_view(url_name="api:schema"), name="docs"),
    path("health/", v.HealthView.as_view(), name="health"),
    path("me/", v.MeView.as_view(), name="me"),
    path("workspaces/", v.WorkspaceListView.as_view(), name="workspaces"),
    path(f"{W}/", v.WorkspaceDetailView.as_view(), name="workspace"),
    path(f"{W}/experiments/", v.ExperimentListView.as_view(), name="experiments"),
    path(f"{E}/", v.ExperimentDetailView.as_view(), name="experiment"),
    path(f"{E}/runs/", v.ExperimentRunsView.as_view(), name="experiment-runs"),
    path(f"{E}/submit/", v.SubmitView.as_view(), name="submit"),
    path(f"{W}/runs/", v.WorkspaceRunsView.as_view(), name="workspace-runs"),
    path(f"{W}/snapshots/", v.SnapshotUploadView.as_view(), name="snapshots"),
    path(f"{W}/snapshots/<str:sha256>/", v.SnapshotDetailView.as_view(), name="snapshot"),
    path(f"{W}/computes/", v.ComputeListView.as_view(), name="computes"),
    path(f"{W}/computes/<str:name>/", v.ComputeDetailView.as_view(), name="compute"),
    path(f"{R}/", v.RunDetailView.as_view(), name="run"),
    path(f"{R}/start/", v.RunStartView.as_view(), name="run-start"),
    path(f"{R}/complete/", v.RunCompleteView.as_view(), name="run-complete"),
    path(f"{R}/fail/", v.RunFailView.as_view(), name="run-fail"),
    path(f"{R}/cancel/", v.RunCancelView.as_view(), name="run-cancel"),
    path(f"{R}/heartbeat/", v.HeartbeatView.as_view(), name="run-heartbeat"),
    path(f"{R}/children/", v.RunChildrenView.as_view(), name="run-children"),
    path(f"{R}/tags/", v.RunTagsView.as_view(), name="run-tags"),
    path(f"{R}/tags/remove/", v.RunTagsRemoveView.as_view(), name="run-tags-remove"),
    path(f"{R}/properties/", v.RunPropertiesView.as_view(), name="run-properties"),
    path(f"{R}/metrics/", v.RunMetricsView.as_view(), name="run-metrics"),
    path(f"{R}/metrics/points/", v.RunMetricPointsView.as_view(), name="run-metric-points"),
    path(f"{R}/logs/", v.RunLogListView.as_view(), name="run-logs"),
    path(f"{R}/logs/content/", v.RunLogContentView.as_view(), name="run-log-content"),
    path(f"{R}/files/", v.RunFileListView.as_view(), name="run-files"),
    path(f"{R}/files/content/", v.RunFileContentView.as_view(), name="run-file-content"),
    path(f"{R}/events/", v.RunEventsView.as_view(), name="run-events"),
    path(f"{R}/snapshot/", v.RunSnapshotView.as_view(), name="run-snapshot"),
    path(f"{R}/runner/heartbeat/", v.RunnerHeartbeatView.as_view(), name="runner-heartbeat"),
    path(f"{R}/runner/started/", v.RunnerStartedView.as_view(), name="runner-started"),
    path(f"{R}/runner/finalizing/", v.RunnerFinalizingView.as_view(), name="runner-finalizing"),
    path(f"{R}/runner/exit/", v.RunnerExitView.as_view(), name="runner-exit"),
]
