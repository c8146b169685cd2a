"""Shared fixtures: two users in two workspaces, API clients, a live studio config.

alice is a member of team-a, bob of team-b; permission tests use bob to show
that nothing of team-a leaks.
"""

from __future__ import annotations

import json
import os

import pytest
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from runs.services import workspaces

os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")  # Playwright's sync API runs an event loop


def make_user(username: str, workspace: str | None = None, *, password: str = "pw-" + "x" * 12):
    user = get_user_model().objects.create_user(username=username, password=password, email=f"{username}@example.com")
    if workspace:
        workspaces.workspace_create(workspace, user)
    return user


@pytest.fixture
def alice(db):
    return make_user("alice", "team-a")


@pytest.fixture
def bob(db):
    return make_user("bob", "team-b")


@pytest.fixture
def alice_key(alice) -> str:
    return workspaces.token_create(alice, "tests")[1]


@pytest.fixture
def bob_key(bob) -> str:
    return workspaces.token_create(bob, "tests")[1]


def token_client(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


@pytest.fixture
def api(alice_key) -> APIClient:
    return token_client(alice_key)


@pytest.fixture
def bob_api(bob_key) -> APIClient:
    return token_client(bob_key)


@pytest.fixture
def studio_config(live_server, alice, alice_key, tmp_path):
    """A config.json for alice on team-a against the live server; returns its path."""
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"url": live_server.url, "workspace_name": "team-a", "token": alice_key}))
    return path


@pytest.fixture(autouse=True)
def isolated_files(settings, tmp_path):
    """Logs and run files of each test in a folder of their own (SQLite reuses run pks)."""
    settings.LOG_DIR = tmp_path / "logs"
    settings.ARTIFACT_DIR = tmp_path / "artifacts"
