"""SDK figures against a real studio process (tests.stack: `manage.py up`, gunicorn + workers).

    python -m tests.benchmarks --only sdk
    python -m tests.benchmarks.bench_sdk [--database sqlite|postgres] [--runs 100000]

Measures, through the SDK (runs.sdk) exactly as a training script uses it:

- `run.log` of 100,000 scalar points end to end: from the first log call until
  the last point is stored (flush() returns only when the studio acknowledged
  every batch), in points per second; also what one log() call costs the
  training loop, and the same for 10 series logged side by side;
- `create_children(count=1000)`: milliseconds for the one request (median of 5);
- `get_runs(tags={...})` over an experiment of 100,000 top-level runs, a few of
  them tagged: the whole generator drained, median of 10, for an equality
  (dict) and a presence (str) filter. The runs are inserted in bulk through the
  Django ORM (`manage.py shell` against the stack's database) so the setup
  takes seconds, not the hours 100,000 API calls would.

Benchmarks print figures and never assert timings. Each function takes the
studio's (url, token, workspace), so they also run against any studio.
"""

from __future__ import annotations

import argparse
import statistics
import time

from runs.sdk import Experiment, Workspace, _sender

POINTS = 100_000


def _log_once(exp: Experiment, series: int, points: int) -> dict:
    run = exp.start_logging()
    names = [f"metric_{k}" for k in range(series)]
    started = time.perf_counter()
    for i in range(points // series):
        for name in names:
            run.log(name, i * 0.001, step=i)
    logged = time.perf_counter()
    run.flush()
    stored = time.perf_counter()
    client = exp.workspace._client
    total = sum(
        client.get(f"runs/{run.id}/metrics/points/", params={"name": name, "max_points": 10})["total"] for name in names
    )
    run.complete()
    return {"points": total, "log_call_us": (logged - started) / points * 1e6, "end_to_end_s": stored - started}


def bench_log(url: str, token: str, workspace: str, points: int = POINTS, repeats: int = 3) -> dict:
    """`points` scalars in one series, then in 10 series side by side, `repeats` times each.

    The first round meets a cold server (gunicorn workers import lazily); the
    figure reported is the median of all rounds, with the first one shown apart.
    """
    ws = Workspace(url=url, name=workspace, token=token)
    exp = Experiment(ws, "bench-sdk-log")
    figures = {}
    for label, series in (("1 series", 1), ("10 series", 10)):
        rounds = [_log_once(exp, series, points) for _ in range(repeats)]
        median = statistics.median(r["end_to_end_s"] for r in rounds)
        figures[label] = {
            "points": min(r["points"] for r in rounds),
            "log_call_us": statistics.median(r["log_call_us"] for r in rounds),
            "end_to_end_s": median,
            "first_s": rounds[0]["end_to_end_s"],
            "points_per_s": points / median,
        }
    return figures


def bench_children(url: str, token: str, workspace: str, count: int = 1000, repeats: int = 5) -> dict:
    ws = Workspace(url=url, name=workspace, token=token)
    parent = Experiment(ws, "bench-sdk-children").start_logging()
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        children = parent.create_children(count=count)
        timings.append((time.perf_counter() - started) * 1000)
        assert len(children) == count  # a wrong answer would make the figure meaningless
        del children  # their heartbeats stop with them
    parent.complete()
    return {"count": count, "median_ms": statistics.median(timings), "min_ms": min(timings)}


SEED_CODE = """
import uuid
from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.db.models import CharField, Value
from django.db.models.functions import Cast, Concat
from runs.models import Experiment, Run, RunTag, Workspace

count, tagged = {count}, {tagged}
ws = Workspace.objects.get(name={workspace!r})
exp, _ = Experiment.objects.get_or_create(workspace=ws, name={experiment!r})
user = get_user_model().objects.filter(is_superuser=True).order_by("pk").first()
with transaction.atomic():
    first = exp.last_run_number + 1
    Run.objects.bulk_create(
        [Run(run_id=str(uuid.uuid4()), experiment=exp, number=first + i, status="Completed",
             submitted_by=user, compute_target="local") for i in range(count)],
        batch_size=5000,
    )
    Experiment.objects.filter(pk=exp.pk).update(last_run_number=first + count - 1)
    fresh = Run.objects.filter(experiment=exp, number__gte=first)
    fresh.update(path=Concat(Value("/"), Cast("pk", output_field=CharField()), Value("/"),
                             output_field=CharField()))
    pks = list(fresh.order_by("number").values_list("pk", flat=True))
    step = max(1, count // tagged)
    RunTag.objects.bulk_create(
        [RunTag(run_id=pk, key="epoch", value=str(i % 100)) for i, pk in enumerate(pks)]
        + [RunTag(run_id=pk, key="bench", value="needle") for pk in pks[::step][:tagged]],
        batch_size=5000,
    )
if connection.vendor == "postgresql":
    # autovacuum would analyze a table that grew this much within a minute; do it now.
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
print(fresh.count())
"""


def seed_runs(stack, workspace: str, experiment: str, count: int, tagged: int) -> int:
    """Insert `count` runs (each with an `epoch` tag, `tagged` of them also bench=needle) in bulk."""
    code = SEED_CODE.format(count=count, tagged=tagged, workspace=workspace, experiment=experiment)
    return int(stack.manage("shell", "-c", code).strip().splitlines()[-1])


def bench_get_runs(url: str, token: str, workspace: str, experiment: str, repeats: int = 10) -> dict:
    ws = Workspace(url=url, name=workspace, token=token)
    exp = Experiment(ws, experiment)
    figures = {}
    for label, tags in (("tags={'bench': 'needle'}", {"bench": "needle"}), ("tags='bench'", "bench")):
        timings, found = [], 0
        for _ in range(repeats):
            started = time.perf_counter()
            found = len(list(exp.get_runs(tags=tags)))
            timings.append((time.perf_counter() - started) * 1000)
        figures[label] = {"found": found, "median_ms": statistics.median(timings), "max_ms": max(timings)}
    started = time.perf_counter()
    first_page = sum(1 for _, _ in zip(range(500), exp.get_runs(), strict=False))
    figures["first 500 runs, no filter"] = {"found": first_page, "ms": (time.perf_counter() - started) * 1000}
    return figures


def report(database: str, runs: int, log: dict, children: dict, listing: dict) -> None:
    print(f"studio: manage.py up (gunicorn), database {database}; orjson in the SDK: {_json_backend()}")
    for label, f in log.items():
        print(
            f"run.log {f['points']:,} scalar points, {label}: {f['points_per_s']:,.0f} points/s end to end "
            f"(median {f['end_to_end_s']:.2f} s from the first log() until all stored; first, cold round "
            f"{f['first_s']:.2f} s); {f['log_call_us']:.2f} µs per log() call"
        )
    print(
        f"create_children(count={children['count']}): median {children['median_ms']:.0f} ms "
        f"(min {children['min_ms']:.0f} ms), one request"
    )
    for label, f in listing.items():
        if "median_ms" in f:
            print(
                f"get_runs({label}) over {runs:,} runs: {f['found']} found, median {f['median_ms']:.1f} ms "
                f"(max {f['max_ms']:.1f} ms)"
            )
        else:
            print(f"get_runs() {label} over {runs:,} runs: {f['ms']:.1f} ms")


def _json_backend() -> str:
    from runs.sdk import _json

    return "yes" if _json.HAVE_ORJSON else "no (stdlib json)"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.benchmarks.bench_sdk")
    parser.add_argument("--database", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--runs", type=int, default=100_000, help="runs in the experiment get_runs searches")
    parser.add_argument("--points", type=int, default=POINTS)
    args = parser.parse_args(argv if argv is not None else [])
    from tests.stack import studio_stack

    for database in ("sqlite", "postgres") if args.database == "both" else (args.database,):
        with studio_stack(database) as stack:
            log = bench_log(stack.url, stack.token, stack.workspace, args.points)
            children = bench_children(stack.url, stack.token, stack.workspace)
            started = time.perf_counter()
            seeded = seed_runs(stack, stack.workspace, "bench-sdk-100k", args.runs, tagged=5)
            print(f"(setup: {seeded:,} runs inserted in bulk in {time.perf_counter() - started:.1f} s)")
            listing = bench_get_runs(stack.url, stack.token, stack.workspace, "bench-sdk-100k")
            report(database, seeded, log, children, listing)
            queue = _sender.sender()
            print(f"(sender: {queue.sent_batches} batches, {queue.sent_points:,} points, {queue.dropped_full} dropped)")


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
