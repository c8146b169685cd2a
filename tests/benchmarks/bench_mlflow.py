"""The same MLflow-client workload against Run Studio and against a local `mlflow server`.

    python -m tests.benchmarks.bench_mlflow [--quick]

Starts a real Run Studio (tests.stack: gunicorn, workers, poller on SQLite)
and `mlflow server --backend-store-uri sqlite:///<tmp>/mlflow.db
--default-artifact-root <tmp>` (same version as the client, installed once into
var/bench/mlflow-venv: its server pins dependencies Run Studio's own venv does
not want), both on free 127.0.0.1 ports, then drives both with the official
client:

- 2,000 `log_metric` calls (one request each),
- 100,000 points through `log_batch` (the client sends them 1,000 per request),
- `search_runs` with a tag filter over 2,000 runs (half of them match; each
  run has a param and a metric, so every returned run carries data).

Prints both timings and the ratio; stops everything it started. Figures, not
pass/fail: a noisy machine moves them.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import requests

# The client (and `mlflow server`) would otherwise try to reach MLflow's telemetry service;
# this machine talks only to itself.
TELEMETRY_OFF = {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}
os.environ.update(TELEMETRY_OFF)

ROOT = Path(__file__).resolve().parents[2]
MLFLOW_VENV = ROOT / "var" / "bench" / "mlflow-venv"
START_TIMEOUT = 180.0


@dataclass
class Server:
    name: str
    url: str
    token: str | None
    root_pid: int
    # Only processes whose command line holds this word are the web server (the studio's
    # tree also has workers and a poller, which this workload does not use).
    web_marker: str = ""

    def cpu_seconds(self) -> float:
        """User + system CPU of the server's web processes so far (from /proc)."""
        total = 0
        for pid in _tree(self.root_pid):
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if self.web_marker in cmdline:
                total += int(fields[11]) + int(fields[12])  # utime, stime
        return total / os.sysconf("SC_CLK_TCK")


def _tree(root: int) -> list[int]:
    tree, frontier = [root], [root]
    while frontier:
        children = []
        for pid in frontier:
            try:
                children += [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
            except OSError:
                continue
        tree += children
        frontier = children
    return tree


@dataclass
class Sizes:
    metric_calls: int = 2000
    batch_points: int = 100_000
    batch_keys: int = 10
    search_runs: int = 2000
    search_repeats: int = 10


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _client_version() -> str:
    import mlflow

    return mlflow.__version__


def _stop(proc: subprocess.Popen, grace: float = 30.0) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _wait_http(url: str, proc: subprocess.Popen, log: Path, headers: dict | None = None) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if requests.get(url, timeout=2, headers=headers or {}).ok:
                return
        except requests.RequestException:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{url} not ready after {START_TIMEOUT} s:\n{log.read_text()[-3000:]}")


# --- the two servers -------------------------------------------------------------------------------------


@contextlib.contextmanager
def studio_server(web_workers: int) -> Iterator[Server]:
    """Run Studio as `make run` starts it (tests.stack), or plain gunicorn when that helper is absent."""
    try:
        from tests.stack import studio_stack
    except ImportError:
        studio_stack = None
    if studio_stack is not None:
        with studio_stack("sqlite", web_workers=web_workers) as stack:
            yield Server("Run Studio", stack.url, stack.token, stack.proc.pid, "gunicorn")
        return
    with _gunicorn_studio(web_workers) as server:
        yield server


@contextlib.contextmanager
def _gunicorn_studio(web_workers: int) -> Iterator[Server]:
    data_dir = Path(tempfile.mkdtemp(prefix="bench-studio-"))
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "CELERY_BROKER_URL")}
    env.update({"STUDIO_DATA_DIR": str(data_dir), "DJANGO_SETTINGS_MODULE": "studio.settings"})
    python = sys.executable
    try:
        subprocess.run([python, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True)
        script = (
            "from django.contrib.auth import get_user_model; from runs.services import workspaces; "
            "u = get_user_model().objects.create_user('bench', password='bench-' + 'x' * 12); "
            "workspaces.workspace_create('bench', u); print(workspaces.token_create(u, 'bench')[1])"
        )
        token = (
            subprocess.run(
                [python, "manage.py", "shell", "-c", script],
                cwd=ROOT,
                env=env,
                check=True,
                capture_output=True,
                text=True,
            )
            .stdout.strip()
            .splitlines()[-1]
        )  # Django's shell first reports what it imported
        port = _free_port()
        log = data_dir / "gunicorn.log"
        command = [python, "-m", "gunicorn", "studio.wsgi:application", "-b", f"127.0.0.1:{port}"]
        command += ["--workers", str(web_workers), "--worker-class", "gthread", "--threads", "8"]
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                command,
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                process_group=0,
            )
        try:
            url = f"http://127.0.0.1:{port}"
            _wait_http(f"{url}/api/me/", proc, log, {"Authorization": f"Token {token}"})
            yield Server("Run Studio", url, token, proc.pid, "gunicorn")
        finally:
            _stop(proc)
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


def _mlflow_executable() -> Path:
    """The `mlflow` command of a venv holding the full mlflow server at the client's version."""
    version = _client_version()
    exe = MLFLOW_VENV / "bin" / "mlflow"
    marker = MLFLOW_VENV / f".mlflow-{version}"
    if exe.exists() and marker.exists():
        return exe
    print(f"installing mlflow=={version} (the server) into {MLFLOW_VENV} — once, about a minute", flush=True)
    shutil.rmtree(MLFLOW_VENV, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(MLFLOW_VENV)], check=True)
    done = subprocess.run(
        [str(MLFLOW_VENV / "bin" / "pip"), "install", "--quiet", f"mlflow=={version}"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    if done.returncode != 0:
        raise RuntimeError(f"pip install mlflow=={version} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    marker.touch()
    return exe


@contextlib.contextmanager
def mlflow_server(web_workers: int) -> Iterator[Server]:
    exe = _mlflow_executable()
    data_dir = Path(tempfile.mkdtemp(prefix="bench-mlflow-"))
    port = _free_port()
    log = data_dir / "mlflow.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update(TELEMETRY_OFF)
    try:
        command = [str(exe), "server", "--backend-store-uri", f"sqlite:///{data_dir}/mlflow.db"]
        command += ["--default-artifact-root", str(data_dir / "artifacts"), "--host", "127.0.0.1"]
        command += ["--port", str(port), "--workers", str(web_workers)]
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                command,
                cwd=data_dir,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                process_group=0,
            )
        try:
            url = f"http://127.0.0.1:{port}"
            _wait_http(f"{url}/health", proc, log)
            yield Server("mlflow server", url, None, proc.pid)
        finally:
            _stop(proc)
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


# --- the workload -----------------------------------------------------------------------------------------


def _use(server: Server):
    import mlflow
    from mlflow import MlflowClient

    for name in ("MLFLOW_TRACKING_TOKEN", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME"):
        os.environ.pop(name, None)
    if server.token:
        os.environ["MLFLOW_TRACKING_TOKEN"] = server.token
    os.environ["MLFLOW_TRACKING_URI"] = server.url
    mlflow.set_tracking_uri(server.url)
    return MlflowClient(server.url)


class Workload:
    """The client-side steps against one server. Timed steps come in rounds (see run_workloads)."""

    def __init__(self, server: Server, sizes: Sizes):
        self.server, self.sizes = server, sizes
        self.client = _use(server)
        tag = uuid.uuid4().hex[:8]
        self.experiment = self.client.create_experiment(f"bench-{tag}")
        self.search_experiment = self.client.create_experiment(f"bench-search-{tag}")
        self.now = int(time.time() * 1000)
        self.metric_run = self.client.create_run(self.experiment).info.run_id
        self.batch_run = self.client.create_run(self.experiment).info.run_id
        self.logged = 0

    def log_metric(self, calls: int) -> None:
        for _ in range(calls):
            i = self.logged
            self.client.log_metric(self.metric_run, "loss", 1.0 / (i + 1), timestamp=self.now + i, step=i)
            self.logged += 1

    def log_batch(self, points: int, first_step: int) -> None:
        from mlflow.entities import Metric

        per_key = points // self.sizes.batch_keys
        steps = range(first_step, first_step + per_key)
        batch = [
            Metric(f"m{k}", float(step) * 0.001 + k, self.now + step, step)
            for k in range(self.sizes.batch_keys)
            for step in steps
        ]
        self.client.log_batch(self.batch_run, metrics=batch)

    def search_setup(self) -> None:
        from mlflow.entities import Metric, Param

        for i in range(self.sizes.search_runs):
            tags = {"group": "a" if i % 2 == 0 else "b", "shard": str(i % 100), "index": str(i)}
            run_id = self.client.create_run(self.search_experiment, tags=tags).info.run_id
            self.client.log_batch(
                run_id,
                metrics=[Metric("acc", i / self.sizes.search_runs, self.now, 0)],
                params=[Param("seed", str(i))],
            )

    def search(self, query: str, expected: int) -> None:
        found = self.client.search_runs([self.search_experiment], query, max_results=1000)
        assert len(found) == expected, f"{self.server.name}: {query!r} found {len(found)}, not {expected}"

    def check(self) -> None:
        history = self.client.get_metric_history(self.metric_run, "loss")
        assert len(history) == self.sizes.metric_calls, f"{self.server.name}: {len(history)} log_metric points"
        history = self.client.get_metric_history(self.batch_run, "m0")
        per_key = self.sizes.batch_points // self.sizes.batch_keys
        assert len(history) == per_key, f"{self.server.name}: {len(history)} log_batch points of m0"


class _timed:
    """Wall time of a block, the server's CPU time and this (client) process's CPU time during it."""

    def __init__(self, server: Server):
        self.server = server

    def __enter__(self):
        self.cpu = self.server.cpu_seconds()
        self.client_cpu = time.process_time()
        self.wall = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self.wall
        self.client_cpu = time.process_time() - self.client_cpu
        self.cpu = self.server.cpu_seconds() - self.cpu

    def result(self) -> tuple[float, float, float]:
        return self.wall, self.cpu, self.client_cpu


ROUNDS = 10


def _settle(servers: list[Server], timeout: float = 60.0) -> None:
    """Wait until freshly started servers stop using CPU (imports, migrations, job runners)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        before = [_tree_cpu(server.root_pid) for server in servers]
        time.sleep(2)
        busy = [(_tree_cpu(server.root_pid) - b) / 2 for server, b in zip(servers, before, strict=True)]
        if max(busy) < 0.05:
            return


def _tree_cpu(root: int) -> float:
    total = 0
    for pid in _tree(root):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def run_workloads(servers: list[Server], sizes: Sizes) -> dict[str, dict[str, tuple[float, ...]]]:
    """Every timed step in rounds that alternate between the servers.

    The machine is shared: a burst of someone else's work lasts seconds, so
    each server gets a slice of every part of the run instead of one of them
    getting the whole noisy minute.
    """
    workloads = [Workload(server, sizes) for server in servers]
    for workload in workloads:  # warm both up: first requests load code and fill caches
        _use(workload.server)
        run_id = workload.client.create_run(workload.experiment).info.run_id
        for i in range(20):
            workload.client.log_metric(run_id, "warm-up", float(i), step=i)
    _settle(servers)
    totals: dict[str, dict[str, list[float]]] = {s.name: {} for s in servers}

    def timed(step: str, workload: Workload, action) -> None:
        _use(workload.server)
        timer = _timed(workload.server)
        with timer:
            action()
        sums = totals[workload.server.name].setdefault(step, [0.0, 0.0, 0.0])
        totals[workload.server.name][step] = [a + b for a, b in zip(sums, timer.result(), strict=True)]

    print(f"  log_metric: {sizes.metric_calls:,} calls in {ROUNDS} rounds", flush=True)
    for _ in range(ROUNDS):
        for w in workloads:
            timed("log_metric", w, lambda w=w: w.log_metric(sizes.metric_calls // ROUNDS))
    print(f"  log_batch: {sizes.batch_points:,} points in {ROUNDS} rounds", flush=True)
    per_round = sizes.batch_points // ROUNDS
    for r in range(ROUNDS):
        first_step = r * per_round // sizes.batch_keys
        for w in workloads:
            timed("log_batch", w, lambda w=w, first_step=first_step: w.log_batch(per_round, first_step))
    for w in workloads:
        _use(w.server)
        w.check()
    print(f"  search: {sizes.search_runs:,} runs with tags, a param and a metric on each server", flush=True)
    for w in workloads:
        timed("search_setup", w, w.search_setup)
    broad = min((sizes.search_runs + 1) // 2, 1000)
    narrow = sum(1 for i in range(sizes.search_runs) if i % 100 == 7)
    for _ in range(sizes.search_repeats):
        for w in workloads:
            timed("search_broad", w, lambda w=w: w.search("tags.group = 'a'", broad))
            timed("search_narrow", w, lambda w=w: w.search("tags.shard = '7'", narrow))
    results: dict[str, dict[str, tuple[float, ...]]] = {}
    for name, steps in totals.items():
        results[name] = {step: tuple(sums) for step, sums in steps.items()}
        for step in ("search_broad", "search_narrow"):
            results[name][step] = tuple(v / sizes.search_repeats for v in results[name][step])
    return results


ROWS = [
    ("log_metric", "{n} log_metric calls", "metric_calls"),
    ("log_batch", "{n} points through log_batch", "batch_points"),
    ("search_broad", "search_runs, tag filter, {n} runs, half match", "search_runs"),
    ("search_narrow", "search_runs, tag filter, {n} runs, 1% match", "search_runs"),
    ("search_setup", "(setup: create {n} runs with tags, a param, a metric)", "search_runs"),
]


def report(sizes: Sizes, results: dict[str, dict[str, tuple[float, ...]]]) -> None:
    studio, other = results["Run Studio"], results["mlflow server"]
    print()
    print(f"MLflow client {_client_version()} against Run Studio and against `mlflow server` (SQLite store)")
    print("wall: as the client sees it. server CPU: the web server processes' CPU time. client CPU: this")
    print("process's, the same work for both servers. Search rows are one call (the mean of the repeats).")
    header = f"{'workload':<52} {'Run Studio':>10} {'mlflow':>9} {'speed-up':>8}"
    print(f"{header}  {'server CPU':>10} {'mlflow':>8} {'ratio':>6}  {'client CPU':>10}")
    for key, label, size_field in ROWS:
        text = label.format(n=f"{getattr(sizes, size_field):,}")
        (s_wall, s_cpu, s_client), (o_wall, o_cpu, o_client) = studio[key], other[key]
        wall_ratio = o_wall / s_wall if s_wall else float("inf")
        cpu_ratio = o_cpu / s_cpu if s_cpu else float("inf")
        print(
            f"{text:<52} {s_wall:>9.3f}s {o_wall:>8.3f}s {wall_ratio:>7.1f}×  "
            f"{s_cpu:>9.3f}s {o_cpu:>7.3f}s {cpu_ratio:>5.1f}×  {(s_client + o_client) / 2:>9.3f}s"
        )
    per_call = (studio["log_metric"][0] / sizes.metric_calls * 1000, other["log_metric"][0] / sizes.metric_calls * 1000)
    print(f"log_metric: {per_call[0]:.1f} ms a call on Run Studio, {per_call[1]:.1f} ms on mlflow server")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tenth of the workload (a smoke test)")
    parser.add_argument("--web-workers", type=int, default=2, help="worker processes of each server")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    sizes = Sizes()
    if args.quick:
        sizes = Sizes(metric_calls=200, batch_points=10_000, search_runs=200, search_repeats=3)
    if sizes.search_runs > 2000 or sizes.batch_points % (ROUNDS * sizes.batch_keys):
        parser.error("sizes must split into rounds evenly")
    with contextlib.ExitStack() as stack:
        print("starting Run Studio and mlflow server ...", flush=True)
        servers = [
            stack.enter_context(studio_server(args.web_workers)),
            stack.enter_context(mlflow_server(args.web_workers)),
        ]
        results = run_workloads(servers, sizes)
    report(sizes, results)
    if args.json:
        args.json.write_text(json.dumps({"sizes": sizes.__dict__, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
