"""Helpers for the page tests: experiments and runs built through the real services.

No tests live here; the page and browser tests import these builders.
"""

from __future__ import annotations

import io
import time
import uuid
import zipfile

from django.test import Client

from runs.access import Principal
from runs.models import Experiment, Run, Workspace
from runs.services import metrics as metric_services
from runs.services import runs as run_services
from runs.services import workspaces

PASSWORD = "pw-" + "x" * 12


def signed_in(user, *, enforce_csrf: bool = False) -> Client:
    client = Client(enforce_csrf_checks=enforce_csrf)
    client.force_login(user)
    return client


def experiment(user, workspace: str = "team-a", name: str = "explore-runs") -> Experiment:
    ws = Workspace.objects.get(name=workspace)
    return workspaces.experiment_get_or_create(Principal(user), ws, name)[0]


def run(
    exp: Experiment,
    user,
    *,
    display_name: str = "",
    description: str = "",
    tags: dict | None = None,
    properties: dict | None = None,
    finish: str | None = None,
    metrics: dict[str, list] | None = None,
) -> Run:
    """An interactive run (Running), optionally finished ("complete", "cancel", "fail") and with metrics."""
    principal = Principal(user)
    created = run_services.run_start_logging(
        principal,
        exp,
        {
            "display_name": display_name,
            "description": description,
            "tags": tags or {},
            "properties": properties or {},
        },
    )
    if metrics:
        log_metrics(created, metrics)
    if finish == "complete":
        run_services.run_complete(principal, created)
    elif finish == "cancel":
        run_services.run_cancel(principal, created)
    elif finish == "fail":
        run_services.run_fail(principal, created, error_details="it broke")
    return Run.objects.get(pk=created.pk)


def log_metrics(target: Run, metrics: dict[str, list]) -> None:
    now = time.time()
    series = [
        {"name": name, "kind": "scalar", "values": values, "times": [now + i for i in range(len(values))]}
        for name, values in metrics.items()
    ]
    metric_services.metrics_ingest(target, {"batch_id": uuid.uuid4().hex, "series": series})


def zip_of(files: dict[str, bytes | str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()
