"""Faults with real processes: the broker restarted mid-run, and what must survive it."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from urllib.parse import urlparse

import pytest
from django.conf import settings

from tests.e2e import Studio

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

METRIC_SCRIPT = """\
import time
from runs.sdk import Run
run = Run.get_context()
for i in range(60):
    run.log("progress", i)
    print(f"step {i}", flush=True)
    time.sleep(0.1)
"""


def _redis_target():
    url = urlparse(settings.CELERY_BROKER_URL)
    if url.scheme != "redis" or url.hostname not in ("127.0.0.1", "localhost") or not shutil.which("redis-server"):
        return None
    return url.hostname, url.port or 6379


def _restart_redis(host: str, port: int) -> None:
    subprocess.run(["redis-cli", "-h", host, "-p", str(port), "shutdown", "nosave"], capture_output=True)
    deadline = time.monotonic() + 10
    while subprocess.run(["redis-cli", "-h", host, "-p", str(port), "ping"], capture_output=True).returncode == 0:
        if time.monotonic() > deadline:
            raise RuntimeError("redis did not stop")
        time.sleep(0.1)
    time.sleep(1.0)  # the broker is away for a moment while the run goes on
    subprocess.run(
        ["redis-server", "--daemonize", "yes", "--bind", host, "--port", str(port), "--save", "", "--appendonly", "no"],
        check=True,
        capture_output=True,
    )
    while subprocess.run(["redis-cli", "-h", host, "-p", str(port), "ping"], capture_output=True).returncode != 0:
        time.sleep(0.1)


@pytest.mark.skipif(_redis_target() is None, reason="needs CELERY_BROKER_URL on a local Redis (CI sets it)")
def test_a_redis_restart_mid_run_loses_nothing(live_server, alice, alice_key, local_worker):
    studio = Studio(live_server.url, alice_key)
    studio.experiment("faults")
    run_id = studio.submit("faults", {"train.py": METRIC_SCRIPT}, "train.py")
    studio.wait_status(run_id, "Running", timeout=30)
    time.sleep(1.0)
    _restart_redis(*_redis_target())
    run = studio.wait_status(run_id, {"Completed", "Failed"}, timeout=90)
    assert run["status"] == "Completed", run
    assert studio.ok("GET", f"runs/{run_id}/metrics/")["progress"] == list(range(60))
    assert studio.log(run_id).decode() == "".join(f"step {i}\n" for i in range(60))
    # The worker reconnected to the restarted broker: the next run is dispatched too.
    after = studio.submit("faults", {"quick.py": "print('after')"}, "quick.py")
    assert studio.wait_status(after, {"Completed", "Failed"}, timeout=60)["status"] == "Completed"
    assert os.environ.get("CELERY_BROKER_URL", "").startswith("redis")
