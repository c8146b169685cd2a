"""The `local` backend: runs a submitted script as processes on the worker's host.

dispatch(): claim the run, unpack its snapshot into a fresh working copy under
WORK_DIR/<run id>/src, and start `python -m runs.runner` in its own session so
it outlives the worker (a warm shutdown or a worker crash neither kills nor
orphans the run: the runner reports over HTTP, not through the worker).

HostMonitor: a thread in every worker that, four times a second, passes cancel
and fail requests to this host's runners (SIGUSR1 + a stop file, so a cancel
takes effect in under a second), and every two seconds tells the studio this
host is alive and which runners have vanished.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import requests
from celery import bootsteps
from django.conf import settings
from django.db import close_old_connections, connection

from runs import snapshots
from runs.lifecycle import Status
from runs.models import Run
from runs.services import execution

log = logging.getLogger(__name__)

# Never hand the studio's own secrets to a user's script.
_PRIVATE_ENV_PREFIXES = ("STUDIO_", "DJANGO_", "CELERY_", "AZUREML_", "DATABASE_", "SECRET_KEY", "PG", "REDIS_")


def hostname() -> str:
    return os.environ.get("STUDIO_HOSTNAME") or socket.gethostname()


def run_dir(run_id: str) -> Path:
    return Path(settings.WORK_DIR) / run_id


def studio_url() -> str:
    return settings.STUDIO_URL or "http://127.0.0.1:8000"


def dispatch(run_pk: int) -> None:
    claim = execution.run_claim(run_pk, hostname())
    if claim is None:
        return
    run, key = claim
    try:
        pid = launch(run, key)
    except Exception as exc:  # any failure to start is the run's failure, explained
        log.exception("could not start run %s", run.run_id)
        execution.dispatch_failed(run, exc)
        return
    execution.runner_launched(run, pid)


def launch(run: Run, key: str) -> int:
    """Prepare the working copy and start the detached runner; return its pid."""
    base = run_dir(run.run_id)
    if base.exists():
        shutil.rmtree(base)
    src, meta = base / "src", base / "runner"
    meta.mkdir(parents=True)
    snapshots.extract(execution.snapshot_path(run.snapshot.sha256), src, max_bytes=settings.STUDIO_SNAPSHOT_MAX_BYTES)
    (src / "outputs").mkdir(exist_ok=True)
    (src / "logs").mkdir(exist_ok=True)
    definition = run.run_definition
    config = {
        "run_id": run.run_id,
        "studio_url": studio_url(),
        "workspace": run.experiment.workspace.name,
        "experiment": run.experiment.name,
        "script": definition.get("script"),
        "command": definition.get("command"),
        "arguments": definition.get("arguments") or [],
        "environment_variables": definition.get("environmentVariables") or {},
        "cancel_grace_seconds": run.cancel_grace_seconds,
        "max_run_duration_seconds": run.max_run_duration_seconds,
        "python": sys.executable,
        "host": hostname(),
    }
    (meta / "config.json").write_text(json.dumps(config))
    token_file = meta / "token"
    fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(key)
    env = {k: v for k, v in os.environ.items() if not k.startswith(_PRIVATE_ENV_PREFIXES)}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(settings.BASE_DIR), env.get("PYTHONPATH", "")) if p)
    with open(meta / "runner.out", "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "runs.runner", str(base)],
            cwd=base,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )
    # Reap it when it ends while this worker lives; if the worker dies first,
    # init adopts and reaps it.
    threading.Thread(target=proc.wait, name=f"reap-{proc.pid}", daemon=True).start()
    return proc.pid


# --- polling the runners on this host ---------------------------------------------------------------


def _proc_cmdline(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return None


def runner_alive(run: Run) -> bool:
    """Is this run's runner still running here? (pid reuse is ruled out by its command line)."""
    if run.runner_pid is None:
        return _unrecorded_runner(run) is not None
    cmdline = _proc_cmdline(run.runner_pid)
    if cmdline is not None:
        return "runs.runner" in cmdline and run.run_id in cmdline
    try:
        os.kill(run.runner_pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not Path("/proc").is_dir()


def _unrecorded_runner(run: Run) -> int | None:
    """A runner started for this run whose pid its worker never recorded (the worker died, or the
    database was away, right after the launch), found by its command line."""
    if not Path("/proc").is_dir():
        return None
    marker = f"runs.runner {run_dir(run.run_id)}"
    for entry in os.listdir("/proc"):
        if entry.isdigit() and marker in (_proc_cmdline(int(entry)) or ""):
            return int(entry)
    return None


def runner_alive_or_reap(run: Run) -> bool:
    """As runner_alive; a vanished runner's script is stopped too, so it cannot run on unseen."""
    if runner_alive(run):
        return True
    pgid_file = run_dir(run.run_id) / "runner" / "script.pgid"
    try:
        pgid = int(pgid_file.read_text())
    except (OSError, ValueError):
        return False
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pgid, sig)
        except (ProcessLookupError, PermissionError):
            break
        time.sleep(0.5)
    return False


def signal_stop(run: Run) -> None:
    """Tell a runner to stop its script now (the stop file says how)."""
    meta = run_dir(run.run_id) / "runner"
    if not meta.is_dir() or run.runner_pid is None:
        return
    stop_file = meta / "stop.json"
    if stop_file.exists():
        return
    tmp = meta / ".stop.json.tmp"
    tmp.write_text(json.dumps({"stop": run.stop_request, "grace_seconds": run.cancel_grace_seconds}))
    os.replace(tmp, stop_file)
    if runner_alive(run):
        os.kill(run.runner_pid, signal.SIGUSR1)


def check_studio_url() -> bool:
    """Can this host's runners reach the studio? Logs the fix when they cannot."""
    url = f"{studio_url()}/api/health/"
    try:
        ok = requests.get(url, timeout=5).ok
    except requests.RequestException as exc:
        ok, reason = False, str(exc)
    else:
        reason = "it did not answer OK"
    if not ok:
        log.error(
            "runners on this host report to STUDIO_URL=%s, but %s (%s): set STUDIO_URL to the address of the "
            "studio's web server as seen from this host",
            studio_url(),
            url,
            reason,
        )
    return ok


def pending_stops(host: str, queues: list[str]) -> list[Run]:
    return list(
        Run.objects.filter(host=host, compute_target__in=queues, status=Status.CANCEL_REQUESTED)
        .exclude(stop_request="")
        .only("pk", "run_id", "runner_pid", "stop_request", "cancel_grace_seconds")
    )


class HostMonitor(bootsteps.StartStopStep):
    """Celery worker step: watch this host's runners while the worker lives."""

    requires = {"celery.worker.components:Pool"}
    STOP_CHECK_SECONDS = 0.25
    REPORT_SECONDS = 2.0

    def __init__(self, worker, **kwargs):
        super().__init__(worker, **kwargs)
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, worker):
        queues = sorted(q for q in worker.app.amqp.queues.consume_from if q != "studio")
        self._thread = threading.Thread(target=self._loop, args=(queues,), name="studio-host-monitor", daemon=True)
        self._thread.start()

    def stop(self, worker):
        self._stopping.set()

    def _loop(self, queues: list[str]) -> None:
        host, pid = hostname(), os.getpid()
        next_report = next_url_check = 0.0
        while not self._stopping.is_set():
            if time.monotonic() >= next_url_check:
                next_url_check = time.monotonic() + (300.0 if check_studio_url() else 30.0)
            try:
                close_old_connections()
                for run in pending_stops(host, queues):
                    signal_stop(run)
                if time.monotonic() >= next_report:
                    execution.host_report(host, queues, pid, runner_alive_or_reap)
                    next_report = time.monotonic() + self.REPORT_SECONDS
            except Exception:  # the database may be away for a while; keep watching
                log.exception("host monitor check failed; retrying")
                connection.close()
            self._stopping.wait(self.STOP_CHECK_SECONDS)
        connection.close()
