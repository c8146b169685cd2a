"""Shared fixtures: two users in two workspaces, API clients, a live studio config.

alice is a member of team-a, bob of team-b; permission tests use bob to show
that nothing of team-a leaks.
"""

from __future__ import annotations

import json
import os

import pytest
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from runs.services import workspaces

os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")  # Playwright's sync API runs an event loop


def make_user(username: str, workspace: str | None = None, *, password: str = "pw-" + "x" * 12):
    user = get_user_model().objects.create_user(username=username, password=password, email=f"{username}@example.com")
    if workspace:
        workspaces.workspace_create(workspace, user)
    return user


@pytest.fixture
def alice(db):
    return make_user("alice", "team-a")


@pytest.fixture
def bob(db):
    return make_user("bob", "team-b")


@pytest.fixture
def alice_key(alice) -> str:
    return workspaces.token_create(alice, "tests")[1]


@pytest.fixture
def bob_key(bob) -> str:
    return workspaces.token_create(bob, "tests")[1]


def token_client(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


@pytest.fixture
def api(alice_key) -> APIClient:
    return token_client(alice_key)


@pytest.fixture
def bob_api(bob_key) -> APIClient:
    return token_client(bob_key)


@pytest.fixture
def studio_config(live_server, alice, alice_key, tmp_path):
    """A config.json for alice on team-a against the live server; returns its path."""
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"url": live_server.url, "workspace_name": "team-a", "token": alice_key}))
    return path


@pytest.fixture(autouse=True)
def isolated_files(settings, tmp_path):
    """Logs and run files of each test in a folder of their own (SQLite reuses run pks)."""
    settings.LOG_DIR = tmp_path / "logs"
    settings.ARTIFACT_DIR = tmp_path / "artifacts"
    from runs.tokens import forget_cached_tokens

    forget_cached_tokens()  # a user deleted by the last test's rollback must not stay signed in


# --- real workers for end-to-end tests ---------------------------------------------------------


def test_database_url() -> str:
    """The URL of the database this test session uses, for worker processes to share it."""
    from django.db import connection

    settings_dict = connection.settings_dict
    if settings_dict["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{settings_dict['NAME']}"
    user = settings_dict.get("USER") or "postgres"
    password = f":{settings_dict['PASSWORD']}" if settings_dict.get("PASSWORD") else ""
    host = settings_dict.get("HOST") or "127.0.0.1"
    port = settings_dict.get("PORT") or 5432
    return f"postgresql://{user}{password}@{host}:{port}/{settings_dict['NAME']}"


class WorkerProcess:
    """A real `celery worker` serving one compute target, sharing the test database and broker."""

    def __init__(self, target: str, studio_url: str, log_path):
        import subprocess

        from runs.management.commands.worker import worker_argv

        self.target = target
        env = dict(os.environ)
        env.update(
            {
                "DJANGO_SETTINGS_MODULE": "tests.settings",
                "STUDIO_URL": studio_url,
                "DATABASE_URL": test_database_url(),
                "PYTHONUNBUFFERED": "1",
            }
        )
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen(
            worker_argv(target), env=env, stdout=self._log, stderr=subprocess.STDOUT, process_group=0
        )

    def wait_ready(self, timeout: float = 30.0) -> None:
        import time

        from runs.models import WorkerHost

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited:\n{self.log_path.read_text()[-3000:]}")
            if WorkerHost.objects.filter(queue=self.target, pid=self.proc.pid).exists():
                return
            time.sleep(0.1)
        raise RuntimeError(f"worker for {self.target} not ready:\n{self.log_path.read_text()[-3000:]}")

    def stop(self, sig=None) -> None:
        import signal
        import subprocess

        if self.proc.poll() is None:
            os.killpg(self.proc.pid, sig or signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._log.close()


def _purge_broker() -> None:
    from studio.celery import app

    with app.connection_for_write() as conn:
        for queue in ("local", "gpu-cluster", "studio"):
            try:
                conn.default_channel.queue_purge(queue)
            except Exception:  # a queue that was never declared has nothing to purge
                pass


@pytest.fixture
def start_worker(live_server, transactional_db, tmp_path):
    """Start real workers: start_worker("local"). All are stopped (and runners ended) after the test."""
    from runs.lifecycle import ACTIVE
    from runs.models import Run

    _purge_broker()
    workers: list[WorkerProcess] = []

    def start(target: str = "local") -> WorkerProcess:
        worker = WorkerProcess(target, live_server.url, tmp_path / f"worker-{target}-{len(workers)}.log")
        workers.append(worker)
        worker.wait_ready()
        return worker

    yield start
    from django.conf import settings

    from tests.e2e import reap_runners

    _end_runners(Run.objects.filter(status__in=ACTIVE))
    reap_runners(settings.WORK_DIR)
    for worker in workers:
        worker.stop()


def _end_runners(runs) -> None:
    """Stop any runner a test left behind, so no process outlives the test."""
    import signal
    import time

    from runs.compute import local

    alive = [run for run in runs if run.runner_pid and local.runner_alive(run)]
    for run in alive:
        os.kill(run.runner_pid, signal.SIGTERM)
    deadline = time.monotonic() + 20
    while alive and time.monotonic() < deadline:
        alive = [run for run in alive if local.runner_alive(run)]
        time.sleep(0.1)
    for run in alive:
        os.kill(run.runner_pid, signal.SIGKILL)


@pytest.fixture
def local_worker(start_worker):
    """One real Celery worker serving the `local` compute target."""
    return start_worker("local")
