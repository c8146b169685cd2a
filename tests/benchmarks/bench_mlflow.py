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

ROOT = Path(__file__).resolve().parents[2]
MLFLOW_VENV = ROOT / "var" / "bench" / "mlflow-venv"
START_TIMEOUT = 180.0


@dataclass
class Server:
    name: str
    url: str
    token: str | None


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
            yield Server("Run Studio", stack.url, stack.token)
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
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [python, "-m", "gunicorn", "studio.wsgi:application", "-b", f"127.0.0.1:{port}"]
                + ["--workers", str(web_workers), "--worker-class", "gthread", "--threads", "8"],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                process_group=0,
            )
        try:
            url = f"http://127.0.0.1:{port}"
            _wait_http(f"{url}/api/me/", proc, log, {"Authorization": f"Token {token}"})
            yield Server("Run Studio", url, token)
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
    subprocess.run(
        [str(MLFLOW_VENV / "bin" / "pip"), "install", "--quiet", f"mlflow=={version}"], check=True, timeout=900
    )
    marker.touch()
    return exe


@contextlib.contextmanager
def mlflow_server(web_workers: int) -> Iterator[Server]:
    exe = _mlflow_executable()
    data_dir = Path(tempfile.mkdtemp(prefix="bench-mlflow-"))
    port = _free_port()
    log = data_dir / "mlflow.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    try:
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [str(exe), "server", "--backend-store-uri", f"sqlite:///{data_dir}/mlflow.db"]
                + ["--default-artifact-root", str(data_dir / "artifacts"), "--host", "127.0.0.1"]
                + ["--port", str(port), "--workers", str(web_workers)],
                cwd=data_dir,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                process_group=0,
            )
        try:
            url = f"http://127.0.0.1:{port}"
            _wait_http(f"{url}/health", proc, log)
            yield Server("mlflow server", url, None)
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


def run_workload(server: Server, sizes: Sizes) -> dict[str, float]:
    from mlflow.entities import Metric, Param

    client = _use(server)
    tag = uuid.uuid4().hex[:8]
    exp_id = client.create_experiment(f"bench-{tag}")
    out: dict[str, float] = {}

    run_id = client.create_run(exp_id).info.run_id
    now = int(time.time() * 1000)
    started = time.perf_counter()
    for i in range(sizes.metric_calls):
        client.log_metric(run_id, "loss", 1.0 / (i + 1), timestamp=now + i, step=i)
    out["log_metric"] = time.perf_counter() - started
    history = client.get_metric_history(run_id, "loss")
    assert len(history) == sizes.metric_calls, f"{server.name}: {len(history)} points stored"

    run_id = client.create_run(exp_id).info.run_id
    per_key = sizes.batch_points // sizes.batch_keys
    points = [
        Metric(f"m{k}", float(step) * 0.001 + k, now + step, step) for k in range(sizes.batch_keys) for step in range(per_key)
    ]
    started = time.perf_counter()
    client.log_batch(run_id, metrics=points)
    out["log_batch"] = time.perf_counter() - started
    assert len(client.get_metric_history(run_id, "m0")) == per_key

    search_exp = client.create_experiment(f"bench-search-{tag}")
    started = time.perf_counter()
    for i in range(sizes.search_runs):
        tags = {"group": "a" if i % 2 == 0 else "b", "index": str(i)}
        run_id = client.create_run(search_exp, tags=tags).info.run_id
        client.log_batch(
            run_id, metrics=[Metric("acc", i / sizes.search_runs, now, 0)], params=[Param("seed", str(i))], tags=[]
        )
    out["search_setup"] = time.perf_counter() - started
    expected = (sizes.search_runs + 1) // 2
    started = time.perf_counter()
    for _ in range(sizes.search_repeats):
        found = client.search_runs([search_exp], "tags.group = 'a'", max_results=1000)
        assert len(found) == min(expected, 1000), f"{server.name}: search found {len(found)}"
    out["search_runs"] = (time.perf_counter() - started) / sizes.search_repeats
    return out


ROWS = [
    ("log_metric", "{n} log_metric calls", "metric_calls"),
    ("log_batch", "{n} points through log_batch", "batch_points"),
    ("search_runs", "search_runs, tag filter over {n} runs (per call)", "search_runs"),
    ("search_setup", "(setup: create {n} runs with tags, a param, a metric)", "search_runs"),
]


def report(sizes: Sizes, results: dict[str, dict[str, float]]) -> None:
    studio, other = results["Run Studio"], results["mlflow server"]
    print()
    print(f"MLflow client {_client_version()} against Run Studio and against `mlflow server` (SQLite store)")
    print(f"{'workload':<58} {'Run Studio':>12} {'mlflow server':>14} {'speed-up':>9}")
    for key, label, size_field in ROWS:
        text = label.format(n=f"{getattr(sizes, size_field):,}")
        ratio = other[key] / studio[key] if studio[key] else float("inf")
        print(f"{text:<58} {studio[key]:>11.3f}s {other[key]:>13.3f}s {ratio:>8.1f}×")
    print(
        f"{'':<58} {sizes.metric_calls / studio['log_metric']:>7.0f} /s   "
        f"{sizes.metric_calls / other['log_metric']:>7.0f} /s  (log_metric calls per second)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tenth of the workload (a smoke test)")
    parser.add_argument("--web-workers", type=int, default=2, help="worker processes of each server")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    sizes = Sizes()
    if args.quick:
        sizes = Sizes(metric_calls=200, batch_points=10_000, search_runs=200, search_repeats=3)
    results: dict[str, dict[str, float]] = {}
    with contextlib.ExitStack() as stack:
        print("starting Run Studio and mlflow server ...", flush=True)
        servers = [stack.enter_context(studio_server(args.web_workers)), stack.enter_context(mlflow_server(args.web_workers))]
        for server in servers:
            print(f"workload against {server.name} at {server.url} ...", flush=True)
            results[server.name] = run_workload(server, sizes)
    report(sizes, results)
    if args.json:
        args.json.write_text(json.dumps({"sizes": sizes.__dict__, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
