"""Faults with real processes against a real `manage.py up` (tests/stack.py): what survives, what is lost.

Each test runs submitted scripts that log metrics through the SDK (deterministic values)
and print deterministic lines, injects one fault into the running studio, and ends
with the same checks:

- every run ends in the status the fault explains (no run of the experiment left
  active; the events and error name what happened);
- every metric point the scripts logged is stored exactly once (a Completed run's
  SDK drained its queue, so each point was acknowledged), compared value by value;
- every byte the scripts printed is stored exactly once, compared byte for byte.

The studio runs on SQLite and the embedded broker, or on PostgreSQL and Redis when the
session's DATABASE_URL points at PostgreSQL (as in CI). Each test prints its figures
(run with -s to see them).
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path
from urllib.parse import urlparse

import pytest
import requests

from runs.lifecycle import ACTIVE
from tests.e2e import Studio, make_zip
from tests.stack import studio_stack
from tests.test_faults_logs import can_mount, read_only

pytestmark = [pytest.mark.e2e]


def _session_database() -> str:
    url = urlparse(os.environ.get("DATABASE_URL", ""))
    return "postgres" if url.scheme.startswith("postgres") else "sqlite"


# The SDK's own warnings ("cannot deliver metrics ... retrying") go to a file, so the driver
# log holds exactly what the script printed and can be compared byte for byte.
WORKLOAD = """\
import json, logging, sys, time
from runs.sdk import Run
from runs.sdk._sender import sender

sdk_log = logging.getLogger("runs.sdk")
sdk_log.addHandler(logging.FileHandler("outputs/sdk.log"))
sdk_log.propagate = False
tag, steps, period, per_step = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
run = Run.get_context()
for i in range(steps):
    for j in range(per_step):
        run.log("x", i * per_step + j)
    print(f"{tag} line {i:06d} " + "." * 48, flush=True)
    time.sleep(period)
run.flush()
s = sender()
with open("outputs/sender.json", "w") as fh:
    json.dump({"sent_points": s.sent_points, "sent_batches": s.sent_batches,
               "duplicate_batches": s.duplicate_batches, "dropped": s.dropped_full}, fh)
"""


def expected_log(tag: str, steps: int) -> bytes:
    return "".join(f"{tag} line {i:06d} " + "." * 48 + "\n" for i in range(steps)).encode()


def submit_workload(studio: Studio, experiment: str, tag: str, steps: int, period: float, per_step: int) -> str:
    return studio.submit(
        experiment, {"train.py": WORKLOAD}, "train.py", arguments=[tag, steps, period, per_step], display_name=tag
    )


def account(studio: Studio, run_id: str, tag: str, steps: int, per_step: int) -> dict:
    """What the run logged against what the studio stored: points and bytes sent, stored, lost, duplicated."""
    sent = steps * per_step
    points = studio.ok("GET", f"runs/{run_id}/metrics/points/", params={"name": "x"}) if per_step else {"values": []}
    values = points["values"]
    distinct = set(values)
    log = studio.whole_log(run_id)
    want = expected_log(tag, steps)
    sender = {}
    response = studio.api("GET", f"runs/{run_id}/files/content/", params={"name": "outputs/sender.json"})
    if response.status_code == 200:
        sender = response.json()
    return {
        "points_sent": sent,
        "points_stored": len(values),
        "points_lost": len(set(range(sent)) - distinct),
        "points_duplicated": len(values) - len(distinct),
        "points_in_order": values == sorted(values),
        "bytes_sent": len(want),
        "bytes_stored": len(log),
        "log_identical": log == want,
        "duplicate_batches_acknowledged": sender.get("duplicate_batches"),
    }


def assert_exactly_once(figures: list[dict]) -> dict:
    total = {
        key: sum(f[key] for f in figures)
        for key in ("points_sent", "points_stored", "points_lost", "points_duplicated", "bytes_sent", "bytes_stored")
    }
    total["duplicate_batches_acknowledged"] = sum(f["duplicate_batches_acknowledged"] or 0 for f in figures)
    assert total["points_lost"] == 0 and total["points_duplicated"] == 0, figures
    assert all(f["points_in_order"] for f in figures), figures
    assert all(f["log_identical"] for f in figures), figures
    assert total["points_stored"] == total["points_sent"] and total["bytes_stored"] == total["bytes_sent"]
    return total


def assert_none_active(studio: Studio, experiment: str) -> None:
    left = studio.ok(
        "GET",
        f"workspaces/{studio.workspace}/experiments/{experiment}/runs/",
        params={"status": ",".join(sorted(ACTIVE)), "include_children": "true"},
    )["results"]
    assert left == [], [(r["run_id"], r["status"]) for r in left]


def assert_completed(studio: Studio, run_id: str, timeout: float) -> dict:
    run = studio.wait_status(run_id, {"Completed", "Failed", "Canceled"}, timeout=timeout)
    events = studio.events(run_id)
    assert run["status"] == "Completed" and run["exit_code"] == 0, (
        run,
        [(e["to_status"], e["reason"]) for e in events],
    )
    assert events[-1]["reason"] == "script exited with code 0"
    return run


def wait_until(predicate, timeout: float, what: str, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"{what} did not happen within {timeout} s")


def stored_lines(studio: Studio, run_id: str) -> int:
    return studio.whole_log(run_id).count(b"\n")


def cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def server_errors(stack) -> int:
    """500s the studio served so far (Django logs each as 'Internal Server Error: <path>')."""
    return stack.log_path.read_text(errors="replace").count("Internal Server Error")


def healthy(url: str) -> bool:
    try:
        return requests.get(f"{url}/api/health/", timeout=2).ok
    except requests.RequestException:
        return False


@pytest.fixture(scope="module")
def stack():
    """One studio for this module's tests; each test uses its own experiment and ends all its runs.

    A short heartbeat timeout and poll interval make the reconciliation under test (an
    interrupted dispatch) happen in seconds rather than the production 20 s and 5 s.
    """
    with studio_stack(
        _session_database(),
        extra_env={"STUDIO_HEARTBEAT_TIMEOUT": "5", "STUDIO_POLL_INTERVAL": "1"},
    ) as stack:
        studio = Studio(stack.url, stack.token, stack.workspace)
        studio.ok("PATCH", f"workspaces/{stack.workspace}/computes/local/", json={"max_concurrent_runs": 20})
        yield stack


@pytest.fixture
def studio(stack) -> Studio:
    return Studio(stack.url, stack.token, stack.workspace)


# --- c. the web server killed ----------------------------------------------------------------------


def test_killing_every_web_process_mid_run_loses_and_duplicates_nothing(stack, studio):
    """SIGKILL gunicorn (master and workers) twice while 5 runs log; the supervisor restarts it."""
    studio.experiment("fault-web")
    errors_before = server_errors(stack)
    steps, period, per_step = 120, 0.05, 20  # ~6 s of logging: 400 points/s and 20 lines/s per run
    runs = {f"web-{i}": submit_workload(studio, "fault-web", f"web-{i}", steps, period, per_step) for i in range(5)}
    for run_id in runs.values():
        studio.wait_status(run_id, "Running", timeout=60)
    wait_until(lambda: all(stored_lines(studio, r) >= 10 for r in runs.values()), 30, "first lines stored")
    downtimes = []
    for _ in range(2):
        web = [pid for pid in stack.pids() if b"\0-m\0gunicorn\0" in cmdline(pid)]
        assert web, "no gunicorn process found"
        killed_at = time.monotonic()
        for pid in web:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        wait_until(lambda: not healthy(stack.url), 5, "the web server going down", interval=0.01)
        wait_until(lambda: healthy(stack.url), 60, "the supervisor restarting the web server", interval=0.05)
        downtimes.append(time.monotonic() - killed_at)
        time.sleep(1.0)
    for run_id in runs.values():
        assert_completed(studio, run_id, timeout=120)
    assert_none_active(studio, "fault-web")
    figures = [account(studio, run_id, tag, steps, per_step) for tag, run_id in runs.items()]
    total = assert_exactly_once(figures)
    assert server_errors(stack) == errors_before, "the restarted web server answered 500"
    print(f"\n[web killed x2, {stack.env.get('DATABASE_URL', 'sqlite')[:10]}] downtime {downtimes} s; {total}")


# --- d. a worker killed mid-dispatch ---------------------------------------------------------------


def big_snapshot(files: int = 6000, size: int = 32 * 1024) -> bytes:
    """A snapshot that takes seconds to unpack (192 MiB of zeros, ~2 MB zipped)."""
    content = {f"data/part-{i:05d}.bin": b"\0" * size for i in range(files)}
    content["train.py"] = "print('must never run')\n"
    return make_zip(content)


def test_a_worker_killed_mid_dispatch_fails_the_run_explained_and_never_starts_it(stack, studio):
    studio.experiment("fault-dispatch")
    errors_before = server_errors(stack)
    body = big_snapshot()
    response = studio.api(
        "POST", f"workspaces/{studio.workspace}/snapshots/", data=body, headers={"Content-Type": "application/zip"}
    )
    assert response.status_code == 201, response.text
    sha = response.json()["sha256"]
    run_id = studio.ok(
        "POST",
        f"workspaces/{studio.workspace}/experiments/fault-dispatch/submit/",
        json={"snapshot": sha, "script": "train.py"},
    )["run_id"]
    work = stack.data_dir / "work" / run_id
    # Unpacking has begun (files appear under src/) and the runner is not started yet (no config).
    wait_until(lambda: (work / "src" / "data").is_dir(), 60, "the dispatch starting to unpack", interval=0.005)
    assert not (work / "runner" / "config.json").exists(), "unpacking finished before the kill; make it bigger"
    assert studio.status(run_id) == "Preparing"
    workers = [pid for pid in stack.pids() if b"\0-m\0celery\0" in cmdline(pid) and b"-Q\0local," in cmdline(pid)]
    assert len(workers) == 1, workers
    os.killpg(workers[0], signal.SIGKILL)
    unpacked = len(list((work / "src" / "data").iterdir()))
    run = studio.wait_status(run_id, {"Completed", "Failed", "Canceled"}, timeout=60)
    events = studio.events(run_id)
    statuses = [e["to_status"] for e in events]
    assert run["status"] == "Failed", (run, events)
    assert statuses.count("Preparing") == 1 and "Starting" not in statuses and "Running" not in statuses, events
    assert "interrupted" in events[-1]["reason"] or "unreachable" in events[-1]["reason"], events[-1]
    assert run["error"]["error"]["message"], run["error"]
    # Never started, then or later (a redelivered dispatch finds the run Failed and leaves it),
    # and the half-unpacked working copy is removed by the host's monitor.
    time.sleep(2.0)
    assert studio.status(run_id) == "Failed"
    assert not work.exists(), sorted(p.name for p in work.rglob("*"))[:5]
    assert studio.whole_log(run_id) == b""
    # The restarted worker serves the queue again: the next run is dispatched and completes.
    after = submit_workload(studio, "fault-dispatch", "after", 3, 0.01, 1)
    assert_completed(studio, after, timeout=60)
    assert_none_active(studio, "fault-dispatch")
    assert server_errors(stack) == errors_before
    reasons = [(e["to_status"], e["reason"]) for e in events]
    print(f"\n[worker killed mid-dispatch] unpacked {unpacked} of 6000 files when killed; events {reasons}")


# --- e. the log folder read-only -------------------------------------------------------------------


@pytest.mark.skipif(os.geteuid() == 0 and not can_mount(), reason="root ignores chmod and mount is unavailable")
def test_a_read_only_log_folder_delays_logs_and_every_byte_arrives_once_when_it_is_writable(stack, studio):
    studio.experiment("fault-disk")
    errors_before = server_errors(stack)
    probe = studio.ok("POST", f"workspaces/{studio.workspace}/experiments/fault-disk/runs/", json={})["run_id"]
    steps, period, per_step = 120, 0.05, 5
    runs = {f"disk-{i}": submit_workload(studio, "fault-disk", f"disk-{i}", steps, period, per_step) for i in range(3)}
    for run_id in runs.values():
        studio.wait_status(run_id, "Running", timeout=60)
    wait_until(lambda: all(stored_lines(studio, r) >= 10 for r in runs.values()), 30, "first lines stored")
    with read_only(stack.data_dir / "logs") as how:
        during = {r: stored_lines(studio, r) for r in runs.values()}
        time.sleep(4.0)  # the scripts go on printing; their runners cannot deliver
        refused = studio.api(
            "POST",
            f"runs/{probe}/logs/content/",
            params={"name": "logs/probe.txt", "offset": 0},
            data=b"probe\n",
            headers={"Content-Type": "application/octet-stream"},
        )
        stalled = {r: stored_lines(studio, r) for r in runs.values()}
    assert refused.status_code == 503, refused.text
    assert refused.json()["code"] == "log_storage" and "log folder" in refused.json()["detail"]
    assert stalled == during, "bytes were stored while the folder was read-only"
    for run_id in runs.values():
        assert_completed(studio, run_id, timeout=120)
    studio.ok("POST", f"runs/{probe}/complete/")
    assert_none_active(studio, "fault-disk")
    total = assert_exactly_once([account(studio, run_id, tag, steps, per_step) for tag, run_id in runs.items()])
    assert server_errors(stack) == errors_before, "the studio answered 500 during the fault"
    print(f"\n[log folder read-only ({how}) for 4 s] {total}")
