"""First start: an admin user, a default workspace, an API token and config.json."""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from django.contrib.auth import get_user_model
from django.db import transaction

from runs.models import Workspace
from runs.services import workspaces


@dataclass
class Bootstrap:
    url: str
    workspace: str
    username: str
    password: str | None  # set only when the user was created now
    token: str | None  # set only when a token was created now
    config_path: Path

    def as_config(self) -> dict:
        return {"url": self.url, "workspace_name": self.workspace, "token": self.token}


def _config_token_valid(path: Path) -> bool:
    from runs.models import ApiToken
    from runs.tokens import hash_key

    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    key = data.get("token")
    return bool(key) and ApiToken.objects.filter(key_hash=hash_key(key), revoked_at__isnull=True).exists()


def write_private_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, indent=2)
        fh.write("\n")
    os.replace(tmp, path)


def bootstrap(url: str, config_path: Path, *, username: str = "admin", workspace: str = "default") -> Bootstrap:
    """Make sure an admin, a workspace and a working config.json exist; create what is missing.

    The config.json (mode 0600) holds the URL, workspace and an API token, so
    `Workspace.from_config(path)` works at once. An existing valid config is
    kept (its URL is refreshed); a token is only minted when there is none.
    """
    User = get_user_model()
    result = Bootstrap(url, workspace, username, None, None, config_path)
    with transaction.atomic():
        user = User.objects.filter(username=username).first()
        if user is None:
            result.password = secrets.token_urlsafe(12)
            user = User.objects.create_superuser(username=username, email="", password=result.password)
        ws = Workspace.objects.filter(name=workspace).first()
        if ws is None:
            ws = workspaces.workspace_create(workspace, user, description="created on first start")
        else:
            workspaces.member_add(ws, user, role="owner")
    if _config_token_valid(config_path):
        data = json.loads(config_path.read_text())
        if data.get("url") != url:
            data["url"] = url
            write_private_json(config_path, data)
        return result
    _token, result.token = workspaces.token_create(user, "make run")
    write_private_json(config_path, result.as_config())
    return result
