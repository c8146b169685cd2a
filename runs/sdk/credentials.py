"""The user's saved studio tokens: `${STUDIO_CONFIG_HOME:-~/.config/run-studio}/credentials.json`.

Shared by the SDK (which reads it when config.json has no token) and the CLI
(`studio login` writes it). The file looks like::

    {"default": "http://127.0.0.1:8000",
     "servers": {"http://127.0.0.1:8000": {"token": "rs_..."}}}

It holds secrets, so it is written atomically (temporary file + rename) with
mode 0600 in a folder of mode 0700, and never printed. URLs are compared after
`normalize_url` (no trailing slash), so "http://h:8000/" and "http://h:8000"
are the same server.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from runs.sdk.exceptions import UserErrorException

FILE_NAME = "credentials.json"


def config_home() -> Path:
    """The folder of the user's studio settings (env STUDIO_CONFIG_HOME, else ~/.config/run-studio)."""
    home = os.environ.get("STUDIO_CONFIG_HOME")
    return Path(home).expanduser() if home else Path.home() / ".config" / "run-studio"


def credentials_path() -> Path:
    return config_home() / FILE_NAME


def normalize_url(url: str) -> str:
    """The form URLs are stored and compared in: stripped, without a trailing slash."""
    return url.strip().rstrip("/")


def load(path: Path | None = None) -> dict:
    """The whole credentials file as {"default": url or None, "servers": {url: {"token": ...}}}.

    A missing file is an empty one. A file that is not valid JSON raises
    UserErrorException naming it (fix or delete it, then `studio login` again).
    """
    path = path or credentials_path()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {"default": None, "servers": {}}
    except OSError as exc:
        raise UserErrorException(f"cannot read the studio credentials file {path}: {exc}") from None
    try:
        data = json.loads(text)
    except ValueError:
        raise UserErrorException(
            f"the studio credentials file {path} is not valid JSON; fix it or delete it and run `studio login` again"
        ) from None
    if not isinstance(data, dict):
        raise UserErrorException(f"the studio credentials file {path} must hold a JSON object")
    servers = data.get("servers")
    return {
        "default": data.get("default") if isinstance(data.get("default"), str) else None,
        "servers": {normalize_url(k): v for k, v in servers.items() if isinstance(v, dict)}
        if isinstance(servers, dict)
        else {},
    }


def token_for(url: str, path: Path | None = None) -> str | None:
    """The saved token for the server at `url`, or None."""
    entry = load(path)["servers"].get(normalize_url(url)) or {}
    token = entry.get("token")
    return token if isinstance(token, str) and token else None


def default_url(path: Path | None = None) -> str | None:
    """The server `studio login` made the default, or None."""
    url = load(path)["default"]
    return normalize_url(url) if url else None


def save(url: str, token: str, *, make_default: bool = True, path: Path | None = None) -> Path:
    """Store `token` for `url` (replacing any previous one); return the file's path.

    With make_default (the default) the server also becomes the default one.
    Other servers' entries are kept. The file is created with mode 0600.
    """
    if not url or not token:
        raise UserErrorException("both a server URL and a token are needed to save credentials")
    path = path or credentials_path()
    data = load(path)
    url = normalize_url(url)
    data["servers"].setdefault(url, {})["token"] = token
    if make_default or not data["default"]:
        data["default"] = url
    _write_private(path, data)
    return path


def remove(url: str, path: Path | None = None) -> bool:
    """Forget the token of `url` (`studio logout`). Returns False if there was none."""
    path = path or credentials_path()
    data = load(path)
    url = normalize_url(url)
    if url not in data["servers"]:
        return False
    del data["servers"][url]
    if data["default"] and normalize_url(data["default"]) == url:
        data["default"] = next(iter(data["servers"]), None)
    _write_private(path, data)
    return True


def _write_private(path: Path, data: dict) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    # The temporary file is created 0600 from the start, so the token is never
    # readable by others, not even for a moment; the rename makes the write atomic.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".credentials-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2, sort_keys=True)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
