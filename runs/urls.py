"""Studio page addresses. `runs:run` (runs/<run_id>/) is linked from the API, so it keeps its shape."""

from __future__ import annotations

from django.urls import path

from runs import views

EXP = "w/<str:workspace>/experiments/<str:experiment>/"
RUN = "runs/<str:run_id>/"

urlpatterns = [
    path("", views.home, name="home"),
    path("search/", views.search, name="search"),
    path("tokens/", views.tokens, name="tokens"),
    path("tokens/<int:token_id>/revoke/", views.token_revoke, name="token_revoke"),
    path("w/<str:workspace>/", views.workspace_page, name="workspace"),
    path("w/<str:workspace>/submit/", views.submit, name="workspace_submit"),
    path(EXP, views.experiment_page, name="experiment"),
    path(f"{EXP}live/", views.experiment_live, name="experiment_live"),
    path(f"{EXP}charts/<int:index>/", views.experiment_chart, name="experiment_chart"),
    path(f"{EXP}submit/", views.submit, name="submit"),
    path(f"{EXP}views/", views.view_create, name="view_create"),
    path(f"{EXP}views/<int:view_id>/", views.view_open, name="view_open"),
    path(f"{EXP}views/<int:view_id>/rename/", views.view_change, {"action": "rename"}, name="view_rename"),
    path(f"{EXP}views/<int:view_id>/update/", views.view_change, {"action": "update"}, name="view_update"),
    path(f"{EXP}views/<int:view_id>/delete/", views.view_change, {"action": "delete"}, name="view_delete"),
    path(RUN, views.run_page, name="run"),
    path(f"{RUN}live/", views.run_live, name="run_live"),
    path(f"{RUN}cancel/", views.run_cancel, name="run_cancel"),
    path(f"{RUN}resubmit/", views.run_resubmit, name="run_resubmit"),
    path(f"{RUN}metrics/", views.run_metrics, name="run_metrics"),
    path(f"{RUN}metrics/chart/", views.run_metric_chart, name="run_metric_chart"),
    path(f"{RUN}logs/", views.run_logs, name="run_logs"),
    path(f"{RUN}logs/tail/", views.run_log_tail, name="run_log_tail"),
    path(f"{RUN}logs/download/", views.run_log_download, name="run_log_download"),
    path(f"{RUN}files/", views.run_files, name="run_files"),
    path(f"{RUN}files/view/", views.run_file_view, name="run_file_view"),
    path(f"{RUN}files/download/", views.run_file_download, name="run_file_download"),
    path(f"{RUN}snapshot/view/", views.run_snapshot_view, name="run_snapshot_view"),
    path(f"{RUN}snapshot/download/", views.run_snapshot_download, name="run_snapshot_download"),
]
