"""The log folder refuses writes: appends fail with a retryable 503, and a retry stores each byte once.

The faults are real file systems, not mocks. chmod does not stop root (CAP_DAC_OVERRIDE), so
as root the log folder becomes a read-only bind mount (the EROFS a disk remounted read-only
after errors gives); otherwise its write bits are removed. A full disk is a tiny tmpfs
(root only), which also shows a partial write: the kernel stores what fits and says so.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

DRIVER = "azureml-logs/70_driver_log.txt"


def _mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True, capture_output=True)


def _umount(folder: Path) -> None:
    # A lazy unmount if a process still holds a file there: the mount must never outlive the test.
    if subprocess.run(["umount", str(folder)], capture_output=True).returncode != 0:
        subprocess.run(["umount", "-l", str(folder)], check=True, capture_output=True)


def can_mount() -> bool:
    if os.geteuid() != 0:
        return False
    probe = Path(f"/tmp/.faults-mount-probe-{os.getpid()}")
    probe.mkdir(exist_ok=True)
    try:
        _mount("-t", "tmpfs", "-o", "size=4k", "tmpfs", str(probe))
    except (subprocess.CalledProcessError, FileNotFoundError):
        return False
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            _umount(probe)
        probe.rmdir()
    return True


@contextlib.contextmanager
def read_only(folder: Path) -> Iterator[str]:
    """Make `folder` (and everything in it) unwritable for the studio's processes; yields how."""
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        _mount("--bind", str(folder), str(folder))
        try:
            for attempt in range(50):
                try:
                    # EBUSY while a process has a file open for writing there (an append in flight).
                    _mount("-o", "remount,bind,ro", str(folder))
                    break
                except subprocess.CalledProcessError:
                    if attempt == 49:
                        raise
                    time.sleep(0.02)
            yield "read-only bind mount"
        finally:
            _umount(folder)
        return
    modes = {path: path.stat().st_mode for path in [folder, *folder.rglob("*")]}
    for path, mode in modes.items():
        path.chmod(mode & ~0o222)
    try:
        yield "chmod a-w"
    finally:
        for path, mode in modes.items():
            path.chmod(mode)


ROOT_MOUNTS = pytest.mark.skipif(not can_mount(), reason="needs root and mount (a real tmpfs/bind mount)")


@pytest.fixture
def run_id(api) -> str:
    api.post("/api/workspaces/team-a/experiments/", {"name": "logs-faults"}, format="json")
    response = api.post("/api/workspaces/team-a/experiments/logs-faults/runs/", {}, format="json")
    assert response.status_code == 201, response.content
    return response.json()["run_id"]


def append(api, run_id: str, offset: int, data: bytes, name: str = DRIVER):
    return api.post(
        f"/api/runs/{run_id}/logs/content/?name={name}&offset={offset}", data, content_type="application/octet-stream"
    )


def stored(api, run_id: str, name: str = DRIVER) -> bytes:
    response = api.get(f"/api/runs/{run_id}/logs/content/", {"name": name, "limit": 16 * 1024 * 1024})
    return b"".join(response.streaming_content) if response.streaming else response.content


@pytest.mark.skipif(os.geteuid() == 0 and not can_mount(), reason="root ignores chmod and mount is unavailable")
def test_an_append_to_a_read_only_log_folder_is_a_retryable_503_and_the_retry_stores_it_once(api, run_id, settings):
    first, second = b"a" * 1000 + b"\n", b"b" * 2000 + b"\n"
    assert append(api, run_id, 0, first).status_code == 200
    with read_only(Path(settings.LOG_DIR)):
        refused = append(api, run_id, len(first), second)
        new_log = append(api, run_id, 0, b"x", name="logs/new.txt")  # a new file, in a new folder
        assert stored(api, run_id) == first  # reads still work
    assert refused.status_code == 503, refused.content
    body = refused.json()
    assert body["code"] == "log_storage"
    assert "log folder" in body["detail"] and "Retry" in body["detail"], body
    assert new_log.status_code == 503, new_log.content
    # The folder is writable again: the runner's retry (same offset, same bytes) is stored once.
    assert append(api, run_id, len(first), second).json() == {
        "name": DRIVER,
        "size": len(first + second),
        "stored": len(second),
    }
    assert append(api, run_id, len(first), second).json()["stored"] == 0  # a second retry: nothing twice
    assert stored(api, run_id) == first + second


@ROOT_MOUNTS
def test_a_full_disk_acknowledges_only_the_bytes_it_stored(api, run_id, settings, tmp_path):
    """The kernel writes what fits and returns a short count; acknowledging the whole append lost the rest."""
    folder = Path(settings.LOG_DIR)
    folder.mkdir(parents=True, exist_ok=True)
    _mount("-t", "tmpfs", "-o", "size=16k", "tmpfs", str(folder))
    try:
        first, second = b"1" * 10240, b"2" * 10240
        assert append(api, run_id, 0, first).json()["stored"] == len(first)
        full = append(api, run_id, len(first), second)
        assert full.status_code == 503, full.content
        assert "No space left" in full.json()["detail"]
        _mount("-o", "remount,size=1m", str(folder))  # space freed
        retried = append(api, run_id, len(first), second)
        assert retried.status_code == 200, retried.content
        assert retried.json()["size"] == len(first + second)
        assert stored(api, run_id) == first + second
    finally:
        _umount(folder)
