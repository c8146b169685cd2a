"""`studio run list` over an experiment with 10,000 runs (issue 4, acceptance 5).

Against a real server started by tests/stack.py (`manage.py up`) on SQLite and on PostgreSQL.
The experiment is seeded with 10,000 top-level runs (3 tags and 1 property each) by bulk ORM
inserts through `manage.py shell`; `studio run list` shows top-level runs, so that is what it
pages through.

Figures (wall times on this host, medians of 5 unless said otherwise):
- the CLI as a user runs it: `studio run list --experiment-name X --last 100` as a subprocess;
- its server-side part: the same API request from a warm client, and the request time the CLI
  itself saw (its --debug log);
- process start-up alone (`studio --version`), the rest of the CLI's wall time;
- paging on: the next page with --continuation, a deep page (after 5,000 runs), --last 1000
  (two requests of 500), and a --query over all 10,000 runs (every page fetched).
"""

from __future__ import annotations

import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

RUNS = 10_000
EXPERIMENT = "bench-cli"
REPEAT = 5
CLI = [sys.executable, "-m", "runs.cli"]


def seed_database(workspace_name: str, runs: int = RUNS) -> dict:
    """Insert `runs` top-level Completed runs with tags and a property (inside `manage.py shell`)."""
    import uuid
    from datetime import timedelta

    from django.db import transaction
    from django.utils import timezone

    from runs.models import Experiment, Run, RunProperty, RunTag, Workspace

    workspace = Workspace.objects.get(name=workspace_name)
    user = workspace.members.first()  # the admin `manage.py up` created; the benchmark's token is theirs
    experiment = Experiment.objects.create(workspace=workspace, name=EXPERIMENT, last_run_number=runs)
    start = timezone.now() - timedelta(days=10)
    batch = 5000
    for first in range(0, runs, batch):
        with transaction.atomic():
            rows = []
            for i in range(first, min(first + batch, runs)):
                began = start + timedelta(seconds=60 * i)
                rows.append(
                    Run(
                        run_id=f"{EXPERIMENT}_{i}_{uuid.uuid4().hex[:8]}",
                        experiment=experiment,
                        number=i + 1,
                        status="Completed",
                        compute_target="local",
                        submitted_by=user,
                        created_at=began,
                        status_changed_at=began,
                        started_at=began,
                        ended_at=began + timedelta(seconds=42),
                    )
                )
            created = Run.objects.bulk_create(rows)
            RunTag.objects.bulk_create(
                [
                    RunTag(run=r, key=key, value=value)
                    for n, r in enumerate(created, start=first)
                    for key, value in (
                        ("quality", "rare" if n % 100 == 0 else "ok"),
                        ("batch", str(n % 10)),
                        ("worth another look", None) if n % 1000 == 0 else ("lr", "0.01"),
                    )
                ]
            )
            RunProperty.objects.bulk_create([RunProperty(run=r, key="author", value="azureml-user") for r in created])
    return {"runs": Run.objects.filter(experiment=experiment, parent__isnull=True).count()}


def _shell(stack, code: str) -> dict:
    out = stack.manage("shell", input_text=code)
    return json.loads(out.strip().splitlines()[-1])


def _run_cli(env: dict, *args: str) -> tuple[float, subprocess.CompletedProcess]:
    started = time.perf_counter()
    result = subprocess.run([*CLI, *args], env=env, capture_output=True, text=True, timeout=300, cwd=env["HOME"])
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"studio {' '.join(args)} failed ({result.returncode}): {result.stderr[-2000:]}")
    return elapsed, result


def _median_cli(env: dict, *args: str, repeat: int = REPEAT) -> tuple[float, subprocess.CompletedProcess]:
    _run_cli(env, *args)  # warm: the OS page cache and the server's connections
    times, last = [], None
    for _ in range(repeat):
        elapsed, last = _run_cli(env, *args)
        times.append(elapsed)
    return statistics.median(times), last


def _debug_http_ms(stderr: str) -> list[float]:
    return [float(ms) for ms in re.findall(r"-> 200 \((\d+) ms", stderr)]


def _api_median_ms(session: requests.Session, url: str, params: dict) -> float:
    session.get(url, params=params).raise_for_status()
    times = []
    for _ in range(REPEAT):
        started = time.perf_counter()
        session.get(url, params=params).raise_for_status()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def _token_after(session: requests.Session, url: str, runs: int) -> str:
    token = None
    for _ in range(runs // 500):
        params = {"page_size": 500, **({"continuation": token} if token else {})}
        token = session.get(url, params=params).json()["continuation"]
    return token


def measure(database: str) -> None:
    from tests.stack import studio_stack

    with studio_stack(database) as stack, tempfile.TemporaryDirectory(prefix="studio-cli-bench-") as home:
        try:
            _measure(stack, database, home)
        except Exception:
            # The server's own log says why it stopped answering, if it did; it is deleted on exit.
            print(f"  server log (tail):\n{stack.log_path.read_text()[-3000:]}", flush=True)
            raise


def _measure(stack, database: str, home: str) -> None:
    broker = "embedded broker" if database == "sqlite" else "Redis"
    print(f"\n[{database} + {broker}] server: manage.py up at {stack.url}", flush=True)
    started = time.monotonic()
    seeded = _shell(
        stack,
        "import json\nfrom tests.benchmarks.bench_cli import seed_database\n"
        f"print(json.dumps(seed_database({stack.workspace!r})))\n",
    )
    print(f"  seeded {seeded['runs']:,} top-level runs in {time.monotonic() - started:.0f} s", flush=True)
    env = {k: v for k, v in stack.env.items() if not k.startswith("STUDIO_") and k not in ("DJANGO_SETTINGS_MODULE",)}
    env.update(
        {
            "HOME": home,
            "STUDIO_CONFIG_HOME": str(Path(home) / "config"),
            "STUDIO_URL": stack.url,
            "STUDIO_TOKEN": stack.token,
            "STUDIO_WORKSPACE": stack.workspace,
            "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
        }
    )
    base = ["run", "list", "--experiment-name", EXPERIMENT]

    startup, _ = _median_cli(env, "--version")
    first, table = _median_cli(env, *base, "--last", "100")
    assert len(table.stdout.splitlines()) == 102, table.stdout[-500:]
    first_json, _ = _median_cli(env, *base, "--last", "100", "-o", "json")
    _, debug = _run_cli(env, *base, "--last", "100", "-o", "json", "--debug")
    seen_by_cli = _debug_http_ms(debug.stderr)

    session = requests.Session()
    session.headers["Authorization"] = f"Token {stack.token}"
    api = f"{stack.url}/api/workspaces/{stack.workspace}/experiments/{EXPERIMENT}/runs/"
    server_ms = _api_median_ms(session, api, {"page_size": 100})

    print(f"  studio run list --experiment-name {EXPERIMENT} --last 100 (subprocess, median of {REPEAT}):")
    print(f"    table output  {first * 1000:7.0f} ms wall", flush=True)
    print(f"    -o json       {first_json * 1000:7.0f} ms wall", flush=True)
    print(f"    of which: process start-up (studio --version) {startup * 1000:.0f} ms;", flush=True)
    print(
        f"    the API request {server_ms:.1f} ms from a warm client (median of {REPEAT}), "
        f"{seen_by_cli[0] if seen_by_cli else float('nan'):.0f} ms as the CLI saw it (new connection)",
        flush=True,
    )

    _, verbose = _run_cli(env, *base, "--last", "100", "--verbose", "-o", "json")
    token = re.search(r"^continuation: (\S+)", verbose.stderr, flags=re.M).group(1)
    second, page2 = _median_cli(env, *base, "--last", "100", "--continuation", token, "-o", "json")
    numbers = [r["number"] for r in json.loads(page2.stdout)]
    assert numbers == list(range(RUNS - 100, RUNS - 200, -1)), numbers[:3]
    deep_token = _token_after(session, api, 5000)
    deep, page = _median_cli(env, *base, "--last", "100", "--continuation", deep_token, "-o", "json")
    assert json.loads(page.stdout)[0]["number"] == RUNS - 5000
    thousand, _ = _median_cli(env, *base, "--last", "1000", "-o", "json", repeat=3)
    query, matched = _median_cli(env, *base, "--query", "[?tags.quality=='rare'].runId", "-o", "tsv", repeat=3)
    assert len(matched.stdout.split()) == RUNS // 100
    print("  paging on (subprocess wall time):", flush=True)
    print(f"    next page, --last 100 --continuation TOKEN        {second * 1000:7.0f} ms", flush=True)
    print(f"    deep page (after 5,000 runs), --last 100           {deep * 1000:7.0f} ms", flush=True)
    print(f"    --last 1000 (two requests of 500), median of 3     {thousand * 1000:7.0f} ms", flush=True)
    print(f"    --query over all {RUNS:,} runs (20 pages), median of 3 {query * 1000:7.0f} ms", flush=True)


def main() -> None:
    for database in ("sqlite", "postgres"):
        try:
            measure(database)
        except Exception as exc:  # one database failing (e.g. no local PostgreSQL) must not hide the other
            print(f"\n[{database}] not measured: {type(exc).__name__}: {exc}", flush=True)


if __name__ == "__main__":
    main()
