"""python manage.py up: the whole studio in the foreground (what `make run` starts).

Migrates, bootstraps (admin, token, config.json), then starts and watches:
the web server (gunicorn), one Celery worker per compute target of kind
`local` (the first also runs the periodic poller), and restarts any that
crash. Ctrl-C or SIGTERM stops everything it started, runs first: their
runners stop the scripts and report, while the web server still listens.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from runs.compute import local
from runs.lifecycle import OCCUPYING
from runs.management.commands.worker import worker_argv
from runs.models import ComputeTarget, Run
from runs.services.bootstrap import bootstrap
from studio.env import env_int

RESTART_WINDOW = 60.0
RESTARTS_PER_WINDOW = 5


class Child:
    """A supervised process, started in its own process group so only `up` gets Ctrl-C."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str]):
        self.name, self.argv, self.env = name, argv, env
        self.proc: subprocess.Popen | None = None
        self.restarts: list[float] = []

    def start(self) -> None:
        self.proc = subprocess.Popen(self.argv, env=self.env, process_group=0)

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: int) -> None:
        if self.running():
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass


class Command(BaseCommand):
    help = "Run the studio in the foreground: web server, workers and poller (Ctrl-C stops all)."

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=env_int("PORT", 8000, minimum=1))
        parser.add_argument("--web-workers", type=int, default=env_int("STUDIO_WEB_WORKERS", 2, minimum=1))
        parser.add_argument("--no-migrate", action="store_true")

    def handle(self, *args, port: int, web_workers: int, no_migrate: bool, **options):
        self._stop_requested = False
        signal.signal(signal.SIGINT, self._on_signal)
        signal.signal(signal.SIGTERM, self._on_signal)
        url = f"http://127.0.0.1:{port}"
        if not no_migrate:
            call_command("migrate", interactive=False, verbosity=0)
        result = bootstrap(url, Path(settings.DATA_DIR) / "config.json")
        env = dict(os.environ)
        env.setdefault("STUDIO_URL", url)
        env["PYTHONUNBUFFERED"] = "1"
        targets = [
            "local",
            *sorted(set(ComputeTarget.objects.filter(kind="local").values_list("name", flat=True)) - {"local"}),
        ]
        children = [self._web(port, web_workers, env)] + [
            Child(f"worker[{name}]", worker_argv(name, beat=(i == 0)), env) for i, name in enumerate(targets)
        ]
        for child in children:
            child.start()
        self._banner(url, result, targets)
        try:
            self._watch(children)
        finally:
            self._shutdown(children)

    def _web(self, port: int, workers: int, env: dict[str, str]) -> Child:
        argv = [
            sys.executable,
            "-m",
            "gunicorn",
            "studio.wsgi:application",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(workers),
            "--worker-class",
            "gthread",
            "--threads",
            "8",
            "--timeout",
            "120",
            "--graceful-timeout",
            "10",
            "--preload",
            "--log-level",
            "warning",
        ]
        return Child("web", argv, env)

    def _banner(self, url: str, result, targets: list[str]) -> None:
        lines = [f"Run Studio is up: {url}  (API: {url}/api/docs/)"]
        if result.password:
            lines.append(f"  admin user: {result.username}   password: {result.password}   (shown once)")
        if result.token:
            lines.append(f"  API token:  {result.token}   (shown once)")
        lines.append(f"  SDK config: {result.config_path}   -> Workspace.from_config('{result.config_path}')")
        lines.append(f"  workers serve compute targets: {', '.join(targets)}   Ctrl-C stops everything")
        self.stdout.write("\n".join(lines))
        self.stdout.flush()

    def _on_signal(self, signum, frame) -> None:
        self._stop_requested = True

    def _watch(self, children: list[Child]) -> None:
        while not self._stop_requested:
            for child in children:
                if child.running() or self._stop_requested:
                    continue
                now = time.monotonic()
                child.restarts = [t for t in child.restarts if now - t < RESTART_WINDOW]
                if len(child.restarts) >= RESTARTS_PER_WINDOW:
                    raise CommandError(f"{child.name} keeps exiting (code {child.proc.returncode}); stopping")
                self.stderr.write(f"{child.name} exited with code {child.proc.returncode}; restarting it")
                child.restarts.append(now)
                child.start()
            time.sleep(0.5)

    def _shutdown(self, children: list[Child]) -> None:
        self.stdout.write("Stopping: runs on this host first, then workers and the web server...")
        self._stop_runners()
        web = [c for c in children if c.name == "web"]
        workers = [c for c in children if c.name != "web"]
        for group in (workers, web):
            for child in group:
                child.signal(signal.SIGTERM)
            self._wait(group, 15.0)
            for child in group:
                child.signal(signal.SIGKILL)
        self.stdout.write("Stopped.")

    def _wait(self, children: list[Child], seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and any(c.running() for c in children):
            time.sleep(0.1)

    def _stop_runners(self) -> None:
        """Ask this host's runners to stop their scripts and report, and wait for them (bounded)."""
        runs = [
            run
            for run in Run.objects.filter(host=local.hostname(), status__in=OCCUPYING, runner_pid__isnull=False)
            if local.runner_alive(run)
        ]
        for run in runs:
            os.kill(run.runner_pid, signal.SIGTERM)
        deadline = time.monotonic() + min(60.0, max((r.cancel_grace_seconds for r in runs), default=0) + 20.0)
        while runs and time.monotonic() < deadline:
            runs = [r for r in runs if local.runner_alive(r)]
            time.sleep(0.2)
        for run in runs:
            os.kill(run.runner_pid, signal.SIGKILL)
