"""Snapshots of a source folder: the deterministic zip that `Experiment.submit` uploads.

What goes in: every regular file under the folder, except what `.amlignore`
matches (or, when there is no `.amlignore`, what `.gitignore` matches; both
use git's wildmatch syntax through pathspec), and always except the folders
`.git/`, `.studio/`, `.azureml/`, `__pycache__/` and `.ipynb_checkpoints/`.

- A symlink pointing inside the folder is stored as the file (or folder) it
  points to; one pointing outside raises SnapshotException naming it (a
  snapshot must not carry files from elsewhere on the machine).
- The zip is deterministic: entries sorted by name, a fixed timestamp, fixed
  permissions that keep only the executable bit, fixed compression. The same
  folder content always gives the same bytes, so the studio (which addresses
  snapshots by sha256) stores it once and the upload is skipped.
- More than STUDIO_SNAPSHOT_MAX_BYTES (default 300 MiB) uncompressed, or more
  than STUDIO_SNAPSHOT_MAX_FILES (default 20,000) files, raises before anything
  is zipped or uploaded.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING

import pathspec

from runs.sdk._env import env_int
from runs.sdk._http import UPLOAD_TIMEOUT, q
from runs.sdk.exceptions import NotFoundException, SnapshotException

if TYPE_CHECKING:
    from runs.sdk.workspace import Workspace

ALWAYS_EXCLUDED = frozenset({".git", ".studio", ".azureml", "__pycache__", ".ipynb_checkpoints"})
IGNORE_FILES = (".amlignore", ".gitignore")
FIXED_DATE = (1980, 1, 1, 0, 0, 0)  # the earliest date a zip can hold
MAX_BYTES_DEFAULT = 300 * 1024 * 1024
MAX_FILES_DEFAULT = 20_000


@dataclass(frozen=True)
class SnapshotFile:
    name: str  # path inside the snapshot, '/'-separated
    source: Path  # the file to read (a symlink's target is read through the link)
    size: int
    executable: bool


def max_bytes() -> int:
    return env_int("STUDIO_SNAPSHOT_MAX_BYTES", MAX_BYTES_DEFAULT, minimum=1)


def max_files() -> int:
    return env_int("STUDIO_SNAPSHOT_MAX_FILES", MAX_FILES_DEFAULT, minimum=1)


def ignore_spec(folder: Path) -> pathspec.PathSpec | None:
    """The rules of .amlignore, else .gitignore, at the top of `folder` (None when neither exists)."""
    for name in IGNORE_FILES:
        path = folder / name
        if path.is_file():
            return pathspec.GitIgnoreSpec.from_lines(path.read_text(encoding="utf-8", errors="replace").splitlines())
    return None


def collect(source_directory: str | os.PathLike) -> list[SnapshotFile]:
    """The files a snapshot of `source_directory` holds, sorted by name.

    Raises SnapshotException for a missing folder, a symlink leading outside it
    (or nowhere, or in a loop), and past the size or file-count limit.
    """
    root = Path(source_directory)
    if not root.is_dir():
        raise SnapshotException(f"source_directory {root} is not a folder")
    real_root = root.resolve()
    spec = ignore_spec(root)
    limit_bytes, limit_files = max_bytes(), max_files()
    files: list[SnapshotFile] = []
    total = 0

    def walk(folder: Path, prefix: str, chain: frozenset[Path]) -> None:
        nonlocal total
        with os.scandir(folder) as entries:
            ordered = sorted(entries, key=lambda e: e.name)
        for entry in ordered:
            relative = prefix + entry.name
            link = entry.is_symlink()
            target = Path(os.path.realpath(entry.path)) if link else None
            if link and not target.exists():  # type: ignore[union-attr]
                if spec is not None and spec.match_file(relative):
                    continue
                raise SnapshotException(
                    f"{entry.path} is a broken symlink (to {os.readlink(entry.path)}); remove it or add it to "
                    ".amlignore"
                )
            is_dir = target.is_dir() if link else entry.is_dir(follow_symlinks=False)  # type: ignore[union-attr]
            if is_dir and entry.name in ALWAYS_EXCLUDED:
                continue
            if spec is not None and spec.match_file(relative + "/" if is_dir else relative):
                continue
            if link and not target.is_relative_to(real_root):  # type: ignore[union-attr]
                raise SnapshotException(
                    f"{entry.path} is a symlink to {target}, outside the source folder {real_root}; a snapshot "
                    "holds only files inside it. Copy what it needs into the folder, or add the link to .amlignore"
                )
            if is_dir:
                real = target if link else Path(os.path.realpath(entry.path))
                if real in chain:
                    raise SnapshotException(f"{entry.path} is a symlink loop; remove it or add it to .amlignore")
                walk(Path(entry.path), relative + "/", chain | {real})  # type: ignore[operator]
                continue
            if not (target.is_file() if link else entry.is_file(follow_symlinks=False)):  # type: ignore[union-attr]
                continue  # sockets, fifos, devices: nothing a script can be shipped with
            info = os.stat(entry.path)
            total += info.st_size
            files.append(SnapshotFile(relative, Path(entry.path), info.st_size, bool(info.st_mode & 0o111)))
            if total > limit_bytes:
                raise SnapshotException(
                    f"the snapshot of {root} is larger than the limit of {limit_bytes} bytes "
                    f"(STUDIO_SNAPSHOT_MAX_BYTES); add large files to .amlignore (e.g. data/, *.ckpt) or move them "
                    "out of the source folder"
                )
            if len(files) > limit_files:
                raise SnapshotException(
                    f"the snapshot of {root} has more than the limit of {limit_files} files "
                    f"(STUDIO_SNAPSHOT_MAX_FILES); add large files to .amlignore (e.g. data/, .venv/) or move them "
                    "out of the source folder"
                )

    walk(root, "", frozenset({real_root}))
    files.sort(key=lambda f: f.name)
    return files


def write_zip(files: list[SnapshotFile], out: IO[bytes]) -> None:
    """Write `files` as a deterministic zip to the seekable stream `out`."""
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
        for file in files:
            info = zipfile.ZipInfo(file.name, date_time=FIXED_DATE)
            info.create_system = 3  # unix, so the mode below is honoured on every platform
            info.external_attr = (0o100755 if file.executable else 0o100644) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            with open(file.source, "rb") as src, archive.open(info, "w") as dst:
                shutil.copyfileobj(src, dst, 1024 * 1024)


def build(source_directory: str | os.PathLike, out: IO[bytes]) -> tuple[str, list[SnapshotFile]]:
    """Zip `source_directory` into `out`; return (sha256 of the zip, the files)."""
    files = collect(source_directory)
    write_zip(files, out)
    out.flush()
    out.seek(0)
    digest = hashlib.sha256()
    while block := out.read(1024 * 1024):
        digest.update(block)
    out.seek(0)
    return digest.hexdigest(), files


def upload_snapshot(workspace: Workspace, source_directory: str | os.PathLike) -> str:
    """Snapshot the folder and make sure the workspace has it; return its sha256.

    An identical snapshot already stored is not uploaded again.
    """
    with tempfile.TemporaryFile() as tmp:
        sha, _files = build(source_directory, tmp)
        return ensure_uploaded(workspace, sha, tmp)


def ensure_uploaded(workspace: Workspace, sha: str, stream: IO[bytes]) -> str:
    client = workspace._client
    base = f"workspaces/{q(workspace.name)}/snapshots/"
    try:
        client.request("GET", f"{base}{q(sha)}/")
        return sha
    except NotFoundException:
        pass
    stored = client.request(
        "POST",
        base,
        data=stream,
        headers={"Content-Type": "application/zip"},
        timeout=UPLOAD_TIMEOUT,
        retry=True,  # content-addressed: uploading the same bytes twice stores them once
    ).json()
    if stored.get("sha256") != sha:
        raise SnapshotException(
            f"the studio stored the snapshot as {stored.get('sha256')}, not {sha}; the upload was altered on the way"
        )
    return sha
