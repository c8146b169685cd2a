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
        token = subprocess.run(
            [python, "manage.py", "shell", "-c", script], cwd=ROOT, env=env, check=True, capture_output=True, text=True
        ).stdout.strip()
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
    """The client-side steps, one server at a time; each timed step runs on both servers back to back."""

    def __init__(self, server: Server, sizes: Sizes):
        self.server, self.sizes = server, sizes
        self.client = _use(server)
        tag = uuid.uuid4().hex[:8]
        self.experiment = self.client.create_experiment(f"bench-{tag}")
        self.search_experiment = self.client.create_experiment(f"bench-search-{tag}")
        self.now = int(time.time() * 1000)

    def log_metric(self) -> tuple[float, float]:
        run_id = self.client.create_run(self.experiment).info.run_id
        timer = _timed(self.server)
        with timer:
            for i in range(self.sizes.metric_calls):
                self.client.log_metric(run_id, "loss", 1.0 / (i + 1), timestamp=self.now + i, step=i)
        history = self.client.get_metric_history(run_id, "loss")
        assert len(history) == self.sizes.metric_calls, f"{self.server.name}: {len(history)} points stored"
        return timer.result()

    def log_batch(self) -> tuple[float, float]:
        from mlflow.entities import Metric

        run_id = self.client.create_run(self.experiment).info.run_id
        per_key = self.sizes.batch_points // self.sizes.batch_keys
        points = [
            Metric(f"m{k}", float(step) * 0.001 + k, self.now + step, step)
            for k in range(self.sizes.batch_keys)
            for step in range(per_key)
        ]
        timer = _timed(self.server)
        with timer:
            self.client.log_batch(run_id, metrics=points)
        assert len(self.client.get_metric_history(run_id, "m0")) == per_key
        return timer.result()

    def search_setup(self) -> tuple[float, float]:
        from mlflow.entities import Metric, Param

        timer = _timed(self.server)
        with timer:
            for i in range(self.sizes.search_runs):
                tags = {"group": "a" if i % 2 == 0 else "b", "index": str(i)}
                run_id = self.client.create_run(self.search_experiment, tags=tags).info.run_id
                self.client.log_batch(
                    run_id,
                    metrics=[Metric("acc", i / self.sizes.search_runs, self.now, 0)],
                    params=[Param("seed", str(i))],
                )
        return timer.result()

    def search_runs(self) -> tuple[float, float]:
        expected = min((self.sizes.search_runs + 1) // 2, 1000)
        timer = _timed(self.server)
        with timer:
            for _ in range(self.sizes.search_repeats):
                found = self.client.search_runs([self.search_experiment], "tags.group = 'a'", max_results=1000)
                assert len(found) == expected, f"{self.server.name}: search found {len(found)}"
        wall, cpu = timer.result()
        return wall / self.sizes.search_repeats, cpu / self.sizes.search_repeats


class _timed:
    """Wall time of a block, and the server's CPU time spent during it."""

    def __init__(self, server: Server):
        self.server = server

    def __enter__(self):
        self.cpu = self.server.cpu_seconds()
        self.wall = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self.wall
        self.cpu = self.server.cpu_seconds() - self.cpu

    def result(self) -> tuple[float, float]:
        return self.wall, self.cpu


STEPS = ("log_metric", "log_batch", "search_setup", "search_runs")


def run_workloads(servers: list[Server], sizes: Sizes) -> dict[str, dict[str, tuple[float, float]]]:
    """Each step on every server in turn, so a noisy moment on the machine hits both alike."""
    workloads = [Workload(server, sizes) for server in servers]
    results: dict[str, dict[str, tuple[float, float]]] = {server.name: {} for server in servers}
    for step in STEPS:
        for workload in workloads:
            print(f"  {step:<13} {workload.server.name} ...", flush=True)
            _use(workload.server)
            results[workload.server.name][step] = getattr(workload, step)()
    return results


ROWS = [
    ("log_metric", "{n} log_metric calls", "metric_calls"),
    ("log_batch", "{n} points through log_batch", "batch_points"),
    ("search_runs", "search_runs, tag filter over {n} runs (per call)", "search_runs"),
    ("search_setup", "(setup: create {n} runs with tags, a param, a metric)", "search_runs"),
]


def report(sizes: Sizes, results: dict[str, dict[str, tuple[float, float]]]) -> None:
    studio, other = results["Run Studio"], results["mlflow server"]
    print()
    print(f"MLflow client {_client_version()} against Run Studio and against `mlflow server` (SQLite store)")
    print("wall: as the client sees it; server CPU: the web server processes' own CPU time")
    header = f"{'workload':<56} {'Run Studio':>11} {'mlflow':>10} {'speed-up':>9}"
    print(f"{header}   {'server CPU: studio':>18} {'mlflow':>9} {'ratio':>7}")
    for key, label, size_field in ROWS:
        text = label.format(n=f"{getattr(sizes, size_field):,}")
        (s_wall, s_cpu), (o_wall, o_cpu) = studio[key], other[key]
        wall_ratio = o_wall / s_wall if s_wall else float("inf")
        cpu_ratio = o_cpu / s_cpu if s_cpu else float("inf")
        print(
            f"{text:<56} {s_wall:>10.3f}s {o_wall:>9.3f}s {wall_ratio:>8.1f}×   "
            f"{s_cpu:>17.3f}s {o_cpu:>8.3f}s {cpu_ratio:>6.1f}×"
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
