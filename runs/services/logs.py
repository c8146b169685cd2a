"""Run logs: append-only byte streams addressed by (run, name, offset).

An append at an offset already stored is acknowledged without writing the
bytes again, so a runner may retry any append safely. A file lock serialises
writers of one log across web processes on a host.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from django.conf import settings

from runs import limits
from runs.errors import Conflict, InvalidInput, NotFound
from runs.models import LogFile, Run
from runs.paths import clean_relative_path, inside

# Conventional names, so every client shows the same tabs.
DRIVER_LOG = "azureml-logs/70_driver_log.txt"
DIAGNOSTIC_LOG = "azureml-logs/60_control_log.txt"
ERROR_LOG = "azureml-logs/80_error_log.txt"
USER_LOG = "logs/user_log.txt"


def log_path(run: Run, name: str) -> Path:
    base = Path(settings.LOG_DIR) / str(run.pk)
    return inside(base, name)


def log_append(run: Run, name: object, offset: object, data: bytes) -> dict:
    """Append `data` at byte `offset` of the log. Returns {"name", "size", "stored"}.

    offset < size: the overlapping bytes are taken as already stored (a retry).
    offset > size: Conflict with the current size, so the client resends from there.
    """
    name = clean_relative_path(name, "log name")
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise InvalidInput("offset must be a non-negative integer", field="offset")
    if len(data) > limits.LOG_APPEND_MAX:
        raise InvalidInput(f"an append carries {len(data)} bytes; the limit is {limits.LOG_APPEND_MAX}")
    path = log_path(run, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o640)
    with os.fdopen(fd, "rb+", buffering=0) as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        size = os.fstat(fh.fileno()).st_size
        if offset > size:
            raise Conflict(
                f"offset {offset} is past the end of log '{name}' ({size} bytes); resend from {size}",
                code="log_gap",
            )
        fresh = data[size - offset :]
        if fresh:
            fh.write(fresh)
        new_size = size + len(fresh)
        LogFile.objects.update_or_create(run=run, name=name, defaults={"size": new_size})
    return {"name": name, "size": new_size, "stored": len(fresh)}


def log_read(run: Run, name: object, offset: object = 0, limit: int = 1024 * 1024) -> tuple[bytes, int]:
    """Bytes of the log after `offset` (at most `limit`), and the log's size."""
    name = clean_relative_path(name, "log name")
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise InvalidInput("offset must be a non-negative integer", field="offset")
    if not LogFile.objects.filter(run=run, name=name).exists():
        raise NotFound(f"run {run.run_id} has no log named '{name}'")
    try:
        with open(log_path(run, name), "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            fh.seek(min(offset, size))
            return fh.read(limit), size
    except FileNotFoundError:
        return b"", 0


def log_files(run: Run) -> list[LogFile]:
    return list(LogFile.objects.filter(run=run).order_by("name"))
