"""Relative paths that users name (log files, run files, snapshot members).

One check for all of them: a path may never leave the folder it is stored in.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from runs.errors import InvalidInput
from runs.limits import FILE_PATH_MAX


def clean_relative_path(raw: object, what: str = "path") -> str:
    """Return a normalised 'a/b/c' path or raise InvalidInput naming the problem."""
    if not isinstance(raw, str) or not raw:
        raise InvalidInput(f"{what} must be a non-empty string", field=what)
    if len(raw) > FILE_PATH_MAX:
        raise InvalidInput(f"{what} is {len(raw)} characters; the limit is {FILE_PATH_MAX}", field=what)
    if "\x00" in raw or any(ord(ch) < 32 for ch in raw):
        raise InvalidInput(f"{what} {raw[:60]!r} contains NUL or control characters", field=what)
    if "\\" in raw:
        raise InvalidInput(f"{what} {raw[:60]!r} contains a backslash; use '/' between folders", field=what)
    if raw.startswith("/"):
        raise InvalidInput(f"{what} {raw[:60]!r} is absolute; give a path relative to the run", field=what)
    parts = [p for p in PurePosixPath(raw).parts if p not in ("", ".")]
    if not parts or any(p == ".." for p in parts):
        raise InvalidInput(f"{what} {raw[:60]!r} leaves its folder ('..' is not allowed)", field=what)
    if any(len(p.encode()) > 255 for p in parts):
        raise InvalidInput(f"{what} {raw[:60]!r} has a name longer than 255 bytes", field=what)
    return "/".join(parts)


def inside(base: Path, relative: str) -> Path:
    """Join a cleaned relative path to base, refusing anything that resolves outside it."""
    target = (base / relative).resolve()
    if not target.is_relative_to(base.resolve()):
        raise InvalidInput(f"path {relative[:60]!r} leaves its folder")
    return target
