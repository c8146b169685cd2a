"""Faults with real processes: the broker restarted mid-run, and what must survive it.

More faults (the web server, a worker mid-dispatch, the log folder, PostgreSQL) are in
tests/test_faults_*.py, with the same end checks: every run ends in an explained status,
and every point and byte logged is stored exactly once.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from urllib.parse import urlparse

import pytest
from django.conf import settings

from runs.lifecycle import ACTIVE
from runs.models import Run
from tests.e2e import Studio
from tests.stack import studio_stack
from tests.test_faults_stack import (
    account,
    assert_completed,
    assert_exactly_once,
    assert_none_active,
    server_errors,
    submit_workload,
)

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


def _stop_redis(host: str, port: int) -> None:
    subprocess.run(["redis-cli", "-h", host, "-p", str(port), "shutdown", "nosave"], capture_output=True)
    deadline = time.monotonic() + 10
    while subprocess.run(["redis-cli", "-h", host, "-p", str(port), "ping"], capture_output=True).returncode == 0:
        if time.monotonic() > deadline:
            raise RuntimeError("redis did not stop")
        time.sleep(0.1)


def _start_redis(host: str, port: int) -> None:
    # Exactly as .ci/run starts it (no persistence: what was queued in it is gone).
    subprocess.run(
        ["redis-server", "--daemonize", "yes", "--bind", host, "--port", str(port), "--save", "", "--appendonly", "no"],
        check=True,
        capture_output=True,
    )
    deadline = time.monotonic() + 30
    while subprocess.run(["redis-cli", "-h", host, "-p", str(port), "ping"], capture_output=True).returncode != 0:
        if time.monotonic() > deadline:
            raise RuntimeError("redis did not start")
        time.sleep(0.1)


@contextlib.contextmanager
def _redis_down(host: str, port: int):
    """Redis stopped for the block; always started again."""
    _stop_redis(host, port)
    try:
        yield
    finally:
        _start_redis(host, port)


def _restart_redis(host: str, port: int) -> None:
    with _redis_down(host, port):
        time.sleep(1.0)  # the broker is away for a moment while the run goes on


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
    assert studio.events(run_id)[-1]["reason"] == "script exited with code 0"
    assert studio.ok("GET", f"runs/{run_id}/metrics/")["progress"] == list(range(60))
    assert studio.log(run_id).decode() == "".join(f"step {i}\n" for i in range(60))
    # The worker reconnected to the restarted broker: the next run is dispatched too.
    after = studio.submit("faults", {"quick.py": "print('after')"}, "quick.py")
    assert studio.wait_status(after, {"Completed", "Failed"}, timeout=60)["status"] == "Completed"
    assert os.environ.get("CELERY_BROKER_URL", "").startswith("redis")
    assert not Run.objects.filter(status__in=ACTIVE).exists()


EARLY, LATE = ["early-0", "early-1", "early-2"], ["late-0", "late-1"]


@pytest.mark.skipif(_redis_target() is None, reason="needs CELERY_BROKER_URL on a local Redis (CI sets it)")
def test_runs_submitted_and_ended_while_redis_is_down_are_answered_and_dispatched_when_it_returns():
    """A real `manage.py up` on PostgreSQL + Redis (its poller is the beat in a worker).

    While the broker is down: a submit is answered 201 (the run waits Queued; its dispatch
    message could not be sent), and runs that end report it (their freed slots cannot be
    announced either). Back up, the poller dispatches what waited. Nothing logged is lost.
    """
    with studio_stack("postgres", extra_env={"STUDIO_POLL_INTERVAL": "1"}) as stack:
        studio = Studio(stack.url, stack.token, stack.workspace)
        studio.ok("PATCH", f"workspaces/{stack.workspace}/computes/local/", json={"max_concurrent_runs": 10})
        studio.experiment("fault-broker")
        errors_before = server_errors(stack)
        steps, period, per_step = 40, 0.05, 20
        runs = {
            f"early-{i}": submit_workload(studio, "fault-broker", f"early-{i}", steps, period, per_step)
            for i in range(3)
        }
        for run_id in runs.values():
            studio.wait_status(run_id, "Running", timeout=60)
        with _redis_down(*_redis_target()):
            late = {
                f"late-{i}": submit_workload(studio, "fault-broker", f"late-{i}", steps, period, per_step)
                for i in range(2)
            }
            for run_id in late.values():
                assert studio.status(run_id) == "Queued"
            # The early runs end meanwhile (about 2 s of logging each).
            for run_id in runs.values():
                studio.wait_status(run_id, {"Completed", "Failed"}, timeout=30)
        runs.update(late)
        for run_id in runs.values():
            assert_completed(studio, run_id, timeout=90)
        assert_none_active(studio, "fault-broker")
        total = assert_exactly_once([account(studio, run_id, tag, steps, per_step) for tag, run_id in runs.items()])
        assert server_errors(stack) == errors_before, stack.log_path.read_text()[-4000:]
        print(f"\n[redis down while 2 runs were submitted and 3 ended] {total}")
