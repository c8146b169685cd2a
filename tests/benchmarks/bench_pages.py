"""Studio page figures (issue 5, acceptance 5): the experiment page at 100,000 runs, chart data
for a 1,000,000-point metric, and live-update polling from 50 open pages.

Measured against a real server started by tests/stack.py (`manage.py up`: gunicorn, workers,
poller) on SQLite and, where a local PostgreSQL answers, on PostgreSQL. The database is seeded
with bulk ORM inserts through `manage.py shell`, so the server under test is untouched.

Figures are wall times seen by a client on the same host (localhost, keep-alive), medians of
repeated requests; CPU is the server's whole process tree (web and workers), from /proc.
"""

from __future__ import annotations

import base64
import json
import os
import statistics
import threading
import time
from pathlib import Path

import requests

from tests.benchmarks.util import cpu_seconds, postgres_available

RUNS = 100_000
BIG_POINTS = 1_000_000
ACTIVE_RUNS = 20
PAGES = 50
POLL_EVERY = 2.0  # seconds, as the experiment page's poller
PASSWORD = "bench-" + "p" * 12
EXPERIMENT = "bench-100k"
REPEAT = 20


# --- seeding (runs inside `manage.py shell` against the server's database) ------------------------


def seed_database(workspace_name: str, runs: int = RUNS, big_points: int = BIG_POINTS) -> dict:
    """Insert `runs` top-level runs with tags, a property and a metric, plus one run with a huge series.

    Bulk inserts straight through the ORM: this measures reading, not ingestion.
    """
    import random
    import uuid
    from datetime import timedelta

    import numpy as np
    from django.contrib.auth import get_user_model
    from django.db import transaction
    from django.utils import timezone

    from runs.models import (
        Experiment,
        MetricChunk,
        MetricSeries,
        Run,
        RunProperty,
        RunTag,
        Workspace,
    )
    from runs.services import workspaces

    rng = random.Random(5)
    workspace = Workspace.objects.get(name=workspace_name)
    user = get_user_model().objects.create_user("bench", password=PASSWORD)
    workspaces.member_add(workspace, user)
    experiment = Experiment.objects.create(workspace=workspace, name=EXPERIMENT, last_run_number=runs + 1)
    start = timezone.now() - timedelta(days=30)
    statuses = ["Completed"] * 8 + ["Failed", "Canceled"]
    batch = 5000
    for first in range(0, runs, batch):
        with transaction.atomic():
            rows = []
            for i in range(first, min(first + batch, runs)):
                began = start + timedelta(seconds=20 * i)
                active = i >= runs - ACTIVE_RUNS
                rows.append(
                    Run(
                        run_id=f"bench_{i}_{uuid.uuid4().hex[:6]}",
                        experiment=experiment,
                        number=i + 1,
                        display_name=f"trial-{i}",
                        description="grid search over learning rates",
                        status="Running" if active else rng.choice(statuses),
                        compute_target="local",
                        submitted_by=user,
                        created_at=began,
                        status_changed_at=began,
                        started_at=began,
                        ended_at=None if active else began + timedelta(seconds=rng.randint(30, 3000)),
                    )
                )
            created = Run.objects.bulk_create(rows)
            RunTag.objects.bulk_create(
                [
                    RunTag(run=r, key=key, value=value)
                    for r in created
                    for key, value in (
                        ("optimizer", rng.choice(["adam", "sgd", "rmsprop"])),
                        ("lr", rng.choice(["0.1", "0.01", "0.001", "0.0001"])),
                        ("quality", "rare" if rng.random() < 0.01 else "ok"),
                    )
                ]
            )
            RunProperty.objects.bulk_create([RunProperty(run=r, key="author", value="bench") for r in created])
            MetricSeries.objects.bulk_create(
                [
                    MetricSeries(run=r, name="loss", kind="scalar", count=100, last_step=99, last_value=rng.random())
                    for r in created
                ]
            )
    big = Run.objects.create(
        run_id=f"bench_big_{uuid.uuid4().hex[:6]}",
        experiment=experiment,
        number=runs + 1,
        display_name="one million points",
        status="Completed",
        submitted_by=user,
        started_at=timezone.now(),
        ended_at=timezone.now(),
    )
    series = MetricSeries.objects.create(run=big, name="loss", kind="scalar")
    chunk = 10_000
    steps = np.arange(big_points, dtype=np.int64)
    values = np.exp(-steps / 200_000) + np.random.default_rng(1).normal(0, 0.01, big_points)
    times = 1.7e9 + steps * 0.01
    MetricChunk.objects.bulk_create(
        [
            MetricChunk(
                series=series,
                seq=at,
                count=min(chunk, big_points - at),
                first_step=int(steps[at]),
                last_step=int(steps[min(at + chunk, big_points) - 1]),
                steps=steps[at : at + chunk].astype("<i8").tobytes(),
                times=times[at : at + chunk].astype("<f8").tobytes(),
                values=values[at : at + chunk].astype("<f8").tobytes(),
            )
            for at in range(0, big_points, chunk)
        ],
        batch_size=20,
    )
    MetricSeries.objects.filter(pk=series.pk).update(
        count=big_points, last_step=big_points - 1, last_value=float(values[-1])
    )
    from django.db import connection

    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")  # autovacuum does this within minutes of a bulk load; do not wait for it
    active = list(Run.objects.filter(experiment=experiment, status="Running").values_list("pk", flat=True))
    return {"big_number": big.number, "big_run_id": big.run_id, "active_pks": active}


def count_queries(workspace_name: str, paths: list[str]) -> dict:
    """Database queries per request for each path, counted in a process against the same database."""
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(get_user_model().objects.get(username="bench"))
    out = {}
    for path in paths:
        client.get(path)  # warm: session and caches as a browser that already has the page
        with CaptureQueriesContext(connection) as captured:
            status = client.get(path).status_code
        out[path] = {"queries": len(captured), "status": status}
    return out


# --- measuring against the running server -------------------------------------------------------------


def _shell(stack, code: str) -> dict:
    """Run `code` in `manage.py shell` against the stack's database; it prints one JSON line."""
    out = stack.manage("shell", input_text=code)
    return json.loads(out.strip().splitlines()[-1])


def _login(url: str) -> requests.Session:
    session = requests.Session()
    session.get(f"{url}/accounts/login/")
    response = session.post(
        f"{url}/accounts/login/",
        data={"username": "bench", "password": PASSWORD, "csrfmiddlewaretoken": session.cookies["csrftoken"]},
        headers={"Referer": f"{url}/accounts/login/"},
    )
    response.raise_for_status()
    return session


def _median_ms(session: requests.Session, url: str, headers: dict | None = None) -> tuple[float, int]:
    session.get(url, headers=headers)  # warm caches and the connection
    times, size = [], 0
    for _ in range(REPEAT):
        started = time.perf_counter()
        response = session.get(url, headers=headers)
        times.append((time.perf_counter() - started) * 1000)
        assert response.status_code in (200, 204), (url, response.status_code, response.text[:300])
        size = len(response.content)
    return statistics.median(times), size


def _once_ms(session: requests.Session, url: str) -> float:
    started = time.perf_counter()
    response = session.get(url)
    assert response.status_code == 200, (url, response.status_code)
    return (time.perf_counter() - started) * 1000


def _cursor(number: int) -> str:
    return base64.urlsafe_b64encode(json.dumps(["v", number, number]).encode()).decode().rstrip("=")


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def idle_cpu(stack, seconds: float = 10.0) -> float:
    """The whole server's CPU with no browser open (workers polling the broker, the run poller)."""
    pids = stack.pids()
    before = cpu_seconds(pids)
    time.sleep(seconds)
    return 100 * (cpu_seconds(pids) - before) / seconds


def _poll(url: str, cookies, stop: threading.Event, interval: float, stats: dict, lock: threading.Lock) -> None:
    session = requests.Session()
    session.cookies.update(cookies)
    headers = {"HX-Request": "true"}
    next_at = time.monotonic()
    while not stop.is_set():
        started = time.perf_counter()
        try:
            code = session.get(url, headers=headers).status_code
        except requests.ConnectionError:
            # The server closed an idle keep-alive connection as we reused it; a browser retries too.
            code = session.get(url, headers=headers).status_code
        elapsed = time.perf_counter() - started
        with lock:
            stats["requests"] += 1
            stats["latencies"].append(elapsed * 1000)
            stats["codes"][code] = stats["codes"].get(code, 0) + 1
        if interval:
            next_at += interval
            stop.wait(max(0.0, next_at - time.monotonic()))


def live_load(stack, url: str, cookies, *, interval: float, seconds: float) -> dict:
    stats = {"requests": 0, "latencies": [], "codes": {}}
    lock = threading.Lock()
    stop = threading.Event()
    pids = stack.pids()
    threads = [
        threading.Thread(target=_poll, args=(url, cookies, stop, interval, stats, lock), daemon=True)
        for _ in range(PAGES)
    ]
    web = [pid for pid in pids if b"gunicorn" in _cmdline(pid)]
    cpu_before, web_before, wall_before = cpu_seconds(pids), cpu_seconds(web), time.monotonic()
    for thread in threads:
        thread.start()
        if interval:
            time.sleep(interval / PAGES)  # pages opened at different moments, as in real life
    stop.wait(seconds)
    stop.set()
    for thread in threads:
        thread.join()
    wall = time.monotonic() - wall_before
    cpu = cpu_seconds(pids) - cpu_before
    return {
        "rps": stats["requests"] / wall,
        "cpu_pct": 100 * cpu / wall,
        "web_cpu_pct": 100 * (cpu_seconds(web) - web_before) / wall,
        "p50": statistics.median(stats["latencies"]),
        "p95": sorted(stats["latencies"])[int(0.95 * len(stats["latencies"])) - 1],
        "codes": stats["codes"],
    }


def measure(database: str) -> None:
    from tests.stack import studio_stack

    with studio_stack(database, web_workers=2) as stack:
        load = os.getloadavg()[0]
        print(
            f"\n[{database}] server: manage.py up (gunicorn, 2 web workers) at {stack.url}; "
            f"host load average {load:.1f} on {os.cpu_count()} cores",
            flush=True,
        )
        started = time.monotonic()
        seeded = _shell(
            stack,
            f"import json\nfrom tests.benchmarks.bench_pages import seed_database\n"
            f"print(json.dumps(seed_database({stack.workspace!r})))\n",
        )
        print(
            f"  seeded {RUNS:,} runs (+300,000 tags, 100,000 properties and metric series) and a "
            f"{BIG_POINTS:,}-point metric in {time.monotonic() - started:.0f} s",
            flush=True,
        )
        exp = f"/w/{stack.workspace}/experiments/{EXPERIMENT}/"
        session = _login(stack.url)
        pages = {
            "first page (50 rows, default columns)": exp,
            "first page, htmx partial": (exp, {"HX-Request": "true"}),
            "filtered: tag optimizer=adam (1 in 3)": f"{exp}?tag=optimizer%3Dadam",
            "filtered: tag quality=rare (1 in 100)": f"{exp}?tag=quality%3Drare",
            "filtered: status Failed + tag lr=0.01": f"{exp}?status=Failed&tag=lr%3D0.01",
            "filtered: text 'trial-4242'": f"{exp}?q=trial-4242",
            "deep page (after run 50,000)": f"{exp}?after={_cursor(50_000)}",
            "sorted by metric loss, with its column": f"{exp}?sort=-m%3Aloss&cols=number,name,status,m:loss",
        }
        print("  experiment page, server time seen by the client (median of 20):")
        for label, target in pages.items():
            path, headers = target if isinstance(target, tuple) else (target, None)
            ms, size = _median_ms(session, f"{stack.url}{path}", headers)
            print(f"    {label:<44} {ms:7.1f} ms  ({size / 1024:.0f} KiB)", flush=True)

        others = {
            "workspace page (experiments with run counts)": f"/w/{stack.workspace}/",
            "global search: tag:quality=rare": "/search/?q=tag%3Aquality%3Drare",
            "run page (overview)": f"/runs/{seeded['big_run_id']}/",
        }
        print("  other pages over the same 100,000 runs (median of 20):")
        for label, path in others.items():
            ms, size = _median_ms(session, f"{stack.url}{path}")
            print(f"    {label:<44} {ms:7.1f} ms  ({size / 1024:.0f} KiB)", flush=True)

        chart = f"{stack.url}{exp}charts/0/?chart=line~loss~step&sel={seeded['big_number']}"
        cold = _once_ms(session, chart)
        ms, size = _median_ms(session, chart)
        print(
            f"  chart data, {BIG_POINTS:,}-point metric, custom-view chart "
            f"(≤2,000 points drawn, {size / 1024:.0f} KiB):"
        )
        print(f"    first read {cold:.1f} ms; then {ms:.1f} ms median (per-process cache of the downsampled series)")
        run_chart = f"{stack.url}/runs/{seeded['big_run_id']}/metrics/chart/?name=loss&x=time"
        cold = _once_ms(session, run_chart)
        ms, _size = _median_ms(session, run_chart)
        print(f"  chart data, same metric by time on the run's Metrics tab: first read {cold:.1f} ms; then {ms:.1f} ms")

        since = int(time.time() * 1_000_000)
        ids = ",".join(str(pk) for pk in seeded["active_pks"])
        live = f"{exp}live/?since={since}&ids={ids}&top={RUNS + 1}"
        counted = _shell(
            stack,
            "import json\nfrom tests.benchmarks.bench_pages import count_queries\n"
            f"print(json.dumps(count_queries({stack.workspace!r}, [{live!r}, {exp!r}])))\n",
        )
        cookies = session.cookies
        baseline = idle_cpu(stack)
        idle = live_load(stack, f"{stack.url}{live}", cookies, interval=POLL_EVERY, seconds=30)
        print(f"  live updates, {PAGES} open pages polling every {POLL_EVERY:.0f} s for 30 s (20 active rows each):")
        print(
            f"    {idle['rps']:.1f} requests/s served; CPU: web processes {idle['web_cpu_pct']:.0f}% of one core "
            f"({10 * idle['web_cpu_pct'] / idle['rps']:.1f} ms a poll), whole server {idle['cpu_pct']:.0f}% "
            f"(idle with no page open: {baseline:.0f}%); p50 {idle['p50']:.1f} ms, p95 {idle['p95']:.1f} ms; "
            f"answers {idle['codes']}"
        )
        print(
            f"    DB queries per poll: {counted[live]['queries']} (nothing changed: 204); "
            f"per full page: {counted[exp]['queries']}"
        )
        flat = live_load(stack, f"{stack.url}{live}", cookies, interval=0, seconds=10)
        print(f"  live updates at saturation, {PAGES} clients polling back to back for 10 s:")
        print(
            f"    {flat['rps']:.0f} requests/s; CPU: web {flat['web_cpu_pct']:.0f}%, whole server "
            f"{flat['cpu_pct']:.0f}% (of {os.cpu_count()} cores × 100%); "
            f"p50 {flat['p50']:.1f} ms, p95 {flat['p95']:.1f} ms",
            flush=True,
        )


def main() -> None:
    measure("sqlite")
    if postgres_available():
        measure("postgres")
    else:
        print("\n[postgres] skipped: no PostgreSQL at STUDIO_BENCH_PG (tests/stack.py)")


if __name__ == "__main__":
    main()
