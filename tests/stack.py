"""Start a real studio (`manage.py up`: gunicorn + workers + poller) for benchmarks and soak runs.

    with studio_stack("postgres") as stack:
        stack.url, stack.token, stack.workspace, stack.data_dir, stack.pids()

SQLite (embedded broker) by default; "postgres" uses a fresh database on the
local PostgreSQL and Redis (database 14), both removed afterwards. Everything
binds 127.0.0.1 on a free port and is stopped on exit.
"""

from __future__ import annotations

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
from dataclasses import dataclass, field
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN_URL = os.environ.get("STUDIO_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("STUDIO_BENCH_REDIS", "redis://127.0.0.1:6379/14")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Stack:
    url: str
    token: str
    workspace: str
    data_dir: Path
    env: dict[str, str]
    proc: subprocess.Popen
    log_path: Path
    extra: dict = field(default_factory=dict)

    def manage(self, *args: str, input_text: str | None = None) -> str:
        """Run a management command against this stack's database."""
        out = subprocess.run(
            [sys.executable, str(ROOT / "manage.py"), *args],
            env=self.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            input=input_text,
            check=True,
        )
        return out.stdout

    def pids(self) -> list[int]:
        """The whole process tree of `manage.py up` (for memory figures)."""
        tree, frontier = [self.proc.pid], [self.proc.pid]
        while frontier:
            children = []
            for pid in frontier:
                try:
                    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
                except OSError:
                    continue
                children += [int(p) for p in text.split()]
            tree += children
            frontier = children
        return tree


def _create_pg_database() -> tuple[str, str]:
    import psycopg

    name = f"studio_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return name, PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name


def _drop_pg_database(name: str) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def studio_stack(
    database: str = "sqlite", *, web_workers: int = 2, extra_env: dict | None = None, timeout: float = 90.0
) -> Iterator[Stack]:
    data_dir = Path(tempfile.mkdtemp(prefix="studio-stack-"))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "CELERY_BROKER_URL")}
    env.update(
        {
            "STUDIO_DATA_DIR": str(data_dir),
            "DJANGO_SETTINGS_MODULE": "studio.settings",
            "STUDIO_WEB_WORKERS": str(web_workers),
            "PYTHONUNBUFFERED": "1",
        }
    )
    pg_name = None
    if database == "postgres":
        pg_name, env["DATABASE_URL"] = _create_pg_database()
        import redis

        redis.Redis.from_url(REDIS_URL).flushdb()
        env["CELERY_BROKER_URL"] = REDIS_URL
    elif database != "sqlite":
        raise ValueError("database must be 'sqlite' or 'postgres'")
    env.update(extra_env or {})
    log_path = data_dir / "up.log"
    log = open(log_path, "wb")
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "manage.py"), "up", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        process_group=0,
    )
    try:
        config = _wait_ready(proc, data_dir, port, timeout, log_path)
        yield Stack(
            f"http://127.0.0.1:{port}", config["token"], config["workspace_name"], data_dir, env, proc, log_path
        )
    finally:
        _stop(proc)
        log.close()
        from tests.e2e import reap_runners

        reap_runners(data_dir / "work")
        if pg_name:
            _drop_pg_database(pg_name)
        shutil.rmtree(data_dir, ignore_errors=True)


def _wait_ready(proc, data_dir: Path, port: int, timeout: float, log_path: Path) -> dict:
    deadline = time.monotonic() + timeout
    config_path = data_dir / "config.json"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"manage.py up exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
        if config_path.exists():
            config = json.loads(config_path.read_text())
            try:
                ok = requests.get(
                    f"http://127.0.0.1:{port}/api/me/", timeout=2, headers={"Authorization": f"Token {config['token']}"}
                ).ok
            except requests.RequestException:
                ok = False
            if ok and "ready" in log_path.read_text():
                return config
        time.sleep(0.2)
    raise RuntimeError(f"studio not ready after {timeout} s:\n{log_path.read_text()[-3000:]}")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
