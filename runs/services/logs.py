"""Run logs: append-only byte streams addressed by (run, name, offset).

An append at an offset already stored is acknowledged without writing the
bytes again, so a runner may retry any append safely. A file lock serialises
writers of one log across web processes on a host. When the log folder cannot
be written (read-only, full, no permission) an append raises Unavailable (503)
and acknowledges nothing beyond what reached the file, so the runner keeps its
bytes and retries.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
from pathlib import Path

from django.conf import settings
from django.utils import timezone

from runs import limits
from runs.errors import Conflict, InvalidInput, NotFound, Unavailable
from runs.models import LogFile, Run
from runs.paths import clean_relative_path, inside

# Conventional names, so every client shows the same tabs.
DRIVER_LOG = "azureml-logs/70_driver_log.txt"
DIAGNOSTIC_LOG = "azureml-logs/60_control_log.txt"
ERROR_LOG = "azureml-logs/80_error_log.txt"
USER_LOG = "logs/user_log.txt"

log = logging.getLogger(__name__)

# The folder's fault, not the request's: the same append succeeds once it is fixed.
_STORAGE_ERRORS = {errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOSPC, errno.EDQUOT, errno.EIO}


def log_path(run: Run, name: str) -> Path:
    base = Path(settings.LOG_DIR) / str(run.pk)
    return inside(base, name)


def log_append(run: Run, name: object, offset: object, data: bytes) -> dict:
    """Append `data` at byte `offset` of the log. Returns {"name", "size", "stored"}.

    offset < size: the overlapping bytes are taken as already stored (a retry).
    offset > size: Conflict with the current size, so the client resends from there.
    """
    name = clean_relative_path(name, "log name")
    if not limits.is_int(offset) or offset < 0:
        raise InvalidInput("offset must be a non-negative integer", field="offset")
    if len(data) > limits.LOG_APPEND_MAX:
        raise InvalidInput(f"an append carries {len(data)} bytes; the limit is {limits.LOG_APPEND_MAX}")
    path = log_path(run, name)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o640)
    except OSError as exc:
        _raise_if_unwritable(exc, name, path)
        raise
    with os.fdopen(fd, "rb+", buffering=0) as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        size = os.fstat(fh.fileno()).st_size
        if offset > size:
            raise Conflict(
                f"offset {offset} is past the end of log '{name}' ({size} bytes); resend from {size}",
                code="log_gap",
            )
        fresh = memoryview(data)[size - offset :]
        try:
            # A raw write may store only part of the bytes (a full disk): write the rest, or
            # fail; a part stored before a failure is acknowledged by the retry's overlap.
            while fresh:
                fresh = fresh[os.write(fh.fileno(), fresh) :]
        except OSError as exc:
            _raise_if_unwritable(exc, name, path)
            raise
        new_size = os.fstat(fh.fileno()).st_size
        # One UPDATE in the common case (a log already known): on SQLite, update_or_create's
        # transaction (BEGIN, SELECT, UPDATE, COMMIT) held the database's one write lock longer.
        if not LogFile.objects.filter(run=run, name=name).update(size=new_size, updated_at=timezone.now()):
            LogFile.objects.update_or_create(run=run, name=name, defaults={"size": new_size})
    return {"name": name, "size": new_size, "stored": new_size - size}


def _raise_if_unwritable(exc: OSError, name: str, path: Path) -> None:
    """A storage failure becomes Unavailable (503, retry later); anything else stays a bug to see."""
    if exc.errno not in _STORAGE_ERRORS:
        return
    log.error("cannot append to run log %s: %s", path, exc)
    raise Unavailable(
        f"the studio cannot write log '{name}': its log folder (LOG_DIR under STUDIO_DATA_DIR) refused it "
        f"({exc.strerror}); nothing more of this append was stored. Retry it later; the studio's "
        "administrator must make the log folder writable (or free space).",
        code="log_storage",
    ) from exc


def log_read(run: Run, name: object, offset: object = 0, limit: int = 1024 * 1024) -> tuple[bytes, int]:
    """Bytes of the log after `offset` (at most `limit`), and the log's size."""
    name = clean_relative_path(name, "log name")
    if not limits.is_int(offset) or offset < 0:
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
