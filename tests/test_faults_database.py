"""PostgreSQL restarted under a running studio (`manage.py up` on PostgreSQL + Redis).

The real server is restarted (every connection of every process is cut, and refused for
a moment) while submitted runs log metrics and stream logs. Afterwards: every run ends
Completed, each point and byte is stored exactly once, the studio answered no 500 (a
request during the outage gets a retryable 503), and the workers recovered: a run
submitted afterwards is dispatched (Celery tasks), and canceling it reaches its runner
within seconds (the host monitor).

Restarting PostgreSQL cuts every session on this machine's server, so it runs only when
the test session itself uses PostgreSQL on 127.0.0.1 (as CI does), and it is short.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from urllib.parse import urlparse

import pytest
import requests

from tests.e2e import HELLO_WITH_DELAY, Studio
from tests.stack import studio_stack
from tests.test_faults_stack import (
    account,
    assert_completed,
    assert_exactly_once,
    assert_none_active,
    server_errors,
    stored_lines,
    submit_workload,
    wait_until,
)

pytestmark = [pytest.mark.e2e]


def _local_postgres() -> str | None:
    """Why the test cannot run here, or None."""
    url = urlparse(os.environ.get("DATABASE_URL", ""))
    if not url.scheme.startswith("postgres") or url.hostname not in ("127.0.0.1", "localhost"):
        return "needs DATABASE_URL on a PostgreSQL at 127.0.0.1 (CI sets it); restarting it must be ours to do"
    if not shutil.which("pg_ctlcluster") or not Path("/etc/postgresql").is_dir():
        return "needs pg_ctlcluster to restart the local PostgreSQL"
    return None


def pg_ready() -> bool:
    return subprocess.run(["pg_isready", "-h", "127.0.0.1", "-p", "5432", "-q"]).returncode == 0


@contextlib.contextmanager
def postgres_down():
    """The server stopped (fast shutdown: every session is cut) for the block, then started again
    the way .ci/run starts it; never left down."""
    version = sorted(os.listdir("/etc/postgresql"))[-1]
    ctl = ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main"]
    subprocess.run([*ctl, "stop"], check=True, capture_output=True, timeout=60)
    try:
        yield
    finally:
        subprocess.run([*ctl, "start"], capture_output=True, timeout=60)
        wait_until(pg_ready, 30, "PostgreSQL accepting connections again", interval=0.1)


@pytest.mark.skipif(_local_postgres() is not None, reason=_local_postgres() or "")
def test_a_postgres_restart_mid_run_loses_nothing_and_every_process_reconnects():
    from django.db import connections

    with studio_stack("postgres", extra_env={"STUDIO_POLL_INTERVAL": "1"}) as stack:
        studio = Studio(stack.url, stack.token, stack.workspace)
        studio.ok("PATCH", f"workspaces/{stack.workspace}/computes/local/", json={"max_concurrent_runs": 10})
        studio.experiment("fault-db")
        errors_before = server_errors(stack)
        steps, period, per_step = 160, 0.05, 20
        runs = {f"db-{i}": submit_workload(studio, "fault-db", f"db-{i}", steps, period, per_step) for i in range(3)}
        for run_id in runs.values():
            studio.wait_status(run_id, "Running", timeout=60)
        wait_until(lambda: all(stored_lines(studio, r) >= 10 for r in runs.values()), 30, "first lines stored")
        down_at = time.monotonic()
        try:
            with postgres_down():
                time.sleep(1.5)  # the runs go on logging meanwhile; their requests fail
                during = studio.api("GET", f"runs/{next(iter(runs.values()))}/", timeout=30)
        finally:
            connections.close_all()  # this session's own connections died with the server too
        downtime = time.monotonic() - down_at
        # A request while the database is away is told to retry, not a 500.
        assert during.status_code == 503, during.text
        assert during.json()["code"] == "database_unavailable" and during.headers["Retry-After"]
        for run_id in runs.values():
            assert_completed(studio, run_id, timeout=120)
        assert_none_active(studio, "fault-db")
        total = assert_exactly_once([account(studio, run_id, tag, steps, per_step) for tag, run_id in runs.items()])

        refused = len(unavailable_answers(stack.log_path))

        # Every kept connection cut again, this time with no downtime (a pooler or failover does
        # this): requests right after must not fail on a dead connection a thread kept.
        cut = cut_connections(stack.env["DATABASE_URL"])
        with ThreadPoolExecutor(32) as pool:
            codes = list(pool.map(lambda _: fresh_get(studio, runs), range(96)))
        assert codes == [200] * len(codes), sorted(set(codes))

        # The workers reconnected: a new run is dispatched (a Celery task) and a cancel reaches its
        # runner through the host monitor's database polling.
        after = studio.submit("fault-db", {"hello_with_delay.py": HELLO_WITH_DELAY}, "hello_with_delay.py")
        studio.wait_status(after, "Running", timeout=60)
        studio.ok("POST", f"runs/{after}/cancel/")
        canceled_at = time.monotonic()
        studio.wait_status(after, "Canceled", timeout=30)
        cancel_seconds = time.monotonic() - canceled_at
        assert cancel_seconds < 10
        served_500 = server_errors(stack) - errors_before
        assert served_500 == 0, stack.log_path.read_text()[-4000:]
        print(
            f"\n[postgres stopped and started again, down {downtime:.1f} s] {total}; {refused} requests answered 503 "
            f"meanwhile, 0 answered 500; then {cut} connections cut: 96 requests all 200; "
            f"a cancel afterwards took {cancel_seconds:.1f} s"
        )


def cut_connections(database_url: str) -> int:
    """Terminate every session on the stack's database (the server stays up); returns how many."""
    import psycopg

    from tests.stack import PG_ADMIN_URL

    name = urlparse(database_url).path.lstrip("/")
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            [name],
        ).fetchall()
    return len(rows)


def fresh_get(studio: Studio, runs: dict) -> int:
    # A new HTTP connection each time, so the requests spread over the web server's threads.
    with requests.Session() as session:
        session.headers.update(studio.session.headers)
        return session.get(f"{studio.url}/api/runs/{next(iter(runs.values()))}/", timeout=30).status_code


def unavailable_answers(log_path: Path) -> list[datetime]:
    """When the API answered 503 because the database was unavailable (runs.api.errors logs each)."""
    times = []
    for line in log_path.read_text(errors="replace").splitlines():
        if "database unavailable during" in line:
            times.append(datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f"))
    return times
