"""Where MLflow clients find the API: at the server root, or under a workspace.

    MLFLOW_TRACKING_URI=http://host:port              → the caller's default workspace
    MLFLOW_TRACKING_URI=http://host:port/w/team-a     → workspace team-a

The client appends /api/2.0/mlflow/..., /api/2.0/mlflow-artifacts/... and
/api/3.0/mlflow/server-info to the tracking URI; /ajax-api/2.0/mlflow/ is the
same API under the path MLflow's web UI uses.
"""

from __future__ import annotations

from django.urls import include, path, re_path

from runs.mlflow import views as v

tracking = [
    path("experiments/create", v.experiments_create),
    path("experiments/get", v.experiments_get),
    path("experiments/get-by-name", v.experiments_get_by_name),
    path("experiments/search", v.experiments_search),
    path("experiments/delete", v.experiments_delete),
    path("experiments/restore", v.experiments_restore),
    path("experiments/update", v.experiments_update),
    path("experiments/set-experiment-tag", v.experiments_set_tag),
    path("experiments/delete-experiment-tag", v.experiments_delete_tag),
    path("runs/create", v.runs_create),
    path("runs/update", v.runs_update),
    path("runs/delete", v.runs_delete),
    path("runs/restore", v.runs_restore),
    path("runs/get", v.runs_get),
    path("runs/search", v.runs_search),
    path("runs/log-metric", v.runs_log_metric),
    path("runs/log-parameter", v.runs_log_param),
    path("runs/set-tag", v.runs_set_tag),
    path("runs/delete-tag", v.runs_delete_tag),
    path("runs/log-batch", v.runs_log_batch),
    path("metrics/get-history", v.metrics_get_history),
    path("metrics/get-history-bulk-interval", v.metrics_get_history_bulk_interval),
    path("artifacts/list", v.artifacts_list),
    path("logged-models/search", v.logged_models_search),
    re_path(r"^(?P<rest>.*)$", v.not_found),
]

artifacts = [
    path("artifacts", v.artifacts_proxy_list),
    path("artifacts/<path:artifact_path>", v.artifact),
    re_path(r"^(?P<rest>.*)$", v.not_found),
]

server = [
    path("server-info", v.server_info),
    re_path(r"^(?P<rest>.*)$", v.not_found),
]


def _mounted(prefix: str) -> list:
    return [
        path(f"{prefix}api/2.0/mlflow/", include(tracking)),
        path(f"{prefix}ajax-api/2.0/mlflow/", include(tracking)),
        path(f"{prefix}api/2.0/mlflow-artifacts/", include(artifacts)),
        path(f"{prefix}api/3.0/mlflow/", include(server)),
    ]


urlpatterns = _mounted("") + _mounted("w/<str:workspace>/")
