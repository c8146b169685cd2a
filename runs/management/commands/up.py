"""python manage.py up: the whole studio in the foreground (what `make run` starts).

Migrates and bootstraps (admin, token, config.json), prints how to connect,
then becomes the small supervisor in runs/supervisor.py, which starts the web
server (gunicorn) and one Celery worker per compute target of kind `local`
(the first also runs the periodic poller), restarts any that crash, and on
Ctrl-C or SIGTERM stops everything it started, runs first.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand

from runs.management.commands.worker import worker_argv
from runs.models import ComputeTarget
from runs.services.bootstrap import bootstrap
from studio.env import env_int


class Command(BaseCommand):
    help = "Run the studio in the foreground: web server, workers and poller (Ctrl-C stops all)."

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=env_int("PORT", 8000, minimum=1))
        parser.add_argument("--web-workers", type=int, default=env_int("STUDIO_WEB_WORKERS", 2, minimum=1))
        parser.add_argument("--no-migrate", action="store_true")

    def handle(self, *args, port: int, web_workers: int, no_migrate: bool, **options):
        url = f"http://127.0.0.1:{port}"
        if not no_migrate:
            call_command("migrate", interactive=False, verbosity=0)
        result = bootstrap(url, Path(settings.DATA_DIR) / "config.json")
        registered = set(ComputeTarget.objects.filter(kind="local").values_list("name", flat=True))
        targets = ["local", *sorted(registered - {"local"})]
        plan = {
            "children": [{"name": "web", "argv": self._web_argv(port, web_workers)}]
            + [{"name": f"worker[{name}]", "argv": worker_argv(name, beat=(i == 0))} for i, name in enumerate(targets)],
            "work_dir": str(settings.WORK_DIR),
            "runner_grace_seconds": settings.STUDIO_CANCEL_GRACE_SECONDS + 20,
        }
        self._banner(url, result, targets)
        os.environ.setdefault("STUDIO_URL", url)
        os.environ["PYTHONUNBUFFERED"] = "1"
        sys.stdout.flush()
        sys.stderr.flush()
        os.execv(sys.executable, [sys.executable, "-m", "runs.supervisor", json.dumps(plan)])

    def _web_argv(self, port: int, workers: int) -> list[str]:
        return [
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

    def _banner(self, url: str, result, targets: list[str]) -> None:
        lines = [f"Run Studio is up: {url}  (API: {url}/api/docs/)"]
        if result.password:
            lines.append(f"  admin user: {result.username}   password: {result.password}   (shown once)")
        if result.token:
            lines.append(f"  API token:  {result.token}   (shown once)")
        lines.append(f"  SDK config: {result.config_path}   -> Workspace.from_config('{result.config_path}')")
        lines.append(f"  workers serve compute targets: {', '.join(targets)}   Ctrl-C stops everything")
        self.stdout.write("\n".join(lines))
