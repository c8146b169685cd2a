"""Snapshot archives: validated when uploaded, unpacked safely on the compute host.

A snapshot is a zip of the submitted source folder. Every member must be a
plain file or folder with a relative path that stays inside the working copy;
symlinks, absolute paths, `..`, and archives that inflate past the limit are
refused with the limit in the message.
"""

from __future__ import annotations

import stat
import zipfile
from pathlib import Path

from runs.errors import InvalidInput, PayloadTooLarge
from runs.paths import clean_relative_path, inside

_BLOCK = 1024 * 1024


def _is_symlink(info: zipfile.ZipInfo) -> bool:
    return stat.S_ISLNK(info.external_attr >> 16)


def inspect(path: Path, *, max_bytes: int, max_files: int) -> tuple[list[str], int]:
    """Check a snapshot zip's members; return (file names, declared uncompressed size)."""
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError):
        raise InvalidInput("the snapshot is not a valid zip archive") from None
    with archive:
        infos = archive.infolist()
        if len(infos) > max_files:
            raise PayloadTooLarge(
                f"the snapshot has {len(infos)} entries; the limit is {max_files} (STUDIO_SNAPSHOT_MAX_FILES)"
            )
        names, seen, total = [], set(), 0
        for info in infos:
            if _is_symlink(info):
                raise InvalidInput(
                    f"snapshot entry '{info.filename[:80]}' is a symlink; snapshots hold plain files only"
                )
            if info.filename.startswith("/") or (len(info.filename) > 1 and info.filename[1] == ":"):
                raise InvalidInput(f"snapshot entry '{info.filename[:80]}' has an absolute path")
            clean = clean_relative_path(info.filename.rstrip("/") or ".", "snapshot entry")
            if clean in seen:
                raise InvalidInput(f"snapshot entry '{clean[:80]}' appears twice")
            seen.add(clean)
            if info.flag_bits & 0x1:
                raise InvalidInput(f"snapshot entry '{clean[:80]}' is encrypted")
            total += info.file_size
            if total > max_bytes:
                raise PayloadTooLarge(
                    f"the snapshot unpacks to more than {max_bytes} bytes, the limit (STUDIO_SNAPSHOT_MAX_BYTES)"
                )
            if not info.is_dir():
                names.append(clean)
        return names, total


def extract(path: Path, dest: Path, *, max_bytes: int) -> int:
    """Unpack into `dest`, counting real inflated bytes (headers can lie). Returns bytes written."""
    dest.mkdir(parents=True, exist_ok=True)
    written = 0
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            if _is_symlink(info):
                raise InvalidInput(f"snapshot entry '{info.filename[:80]}' is a symlink")
            clean = clean_relative_path(info.filename.rstrip("/") or ".", "snapshot entry")
            target = inside(dest, clean)
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(info) as src, open(target, "wb") as out:
                while block := src.read(_BLOCK):
                    written += len(block)
                    if written > max_bytes:
                        raise PayloadTooLarge(f"the snapshot inflates past {max_bytes} bytes; refusing to unpack it")
                    out.write(block)
            mode = (info.external_attr >> 16) & 0o777
            if mode & 0o100:
                target.chmod(0o755)
    return written
