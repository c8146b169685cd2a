"""python manage.py worker --target NAME: a Celery worker serving one compute target here."""

from __future__ import annotations

import os
import sys

from django.core.management.base import BaseCommand, CommandError

from runs.models import ComputeTarget


def worker_argv(target: str, *, concurrency: int = 4, beat: bool = False, loglevel: str = "info") -> list[str]:
    """The celery command line for a worker of `target` (also used by `manage.py up`).

    Threads, not processes: dispatching only unpacks a snapshot and starts a
    detached runner, so a few threads keep memory low. The `studio` queue
    carries housekeeping (the poller), which any worker may run.
    """
    argv = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "studio",
        "worker",
        "-Q",
        f"{target},studio",
        "-n",
        f"{target}@%h",
        "--pool",
        "threads",
        "--concurrency",
        str(concurrency),
        "--loglevel",
        loglevel,
        "--without-mingle",
        "--without-gossip",
    ]
    if beat:
        argv.append("--studio-beat")
    return argv


class Command(BaseCommand):
    help = "Start a Celery worker serving compute target NAME on this host (needs the database and broker)."

    def add_arguments(self, parser):
        parser.add_argument("--target", required=True, help="compute target name (its queue)")
        parser.add_argument("--concurrency", type=int, default=4, help="dispatch threads (default 4)")
        parser.add_argument("--beat", action="store_true", help="also run the periodic poller (one per studio)")
        parser.add_argument("--loglevel", default="info")

    def handle(self, *args, target, concurrency, beat, loglevel, **options):
        if concurrency < 1:
            raise CommandError("--concurrency must be at least 1")
        if not ComputeTarget.objects.filter(name=target).exists():
            self.stderr.write(
                f"warning: no workspace has a compute target named '{target}' yet; register it with "
                f"`studio compute create --name {target}` — this worker serves its queue meanwhile"
            )
        argv = worker_argv(target, concurrency=concurrency, beat=beat, loglevel=loglevel)
        os.execv(argv[0], argv)
