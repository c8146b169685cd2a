"""Helpers for the CLI tests: run `studio` as a subprocess, isolated from the user's own settings.

No tests live here; tests/test_cli_*.py import these helpers and fixtures.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e import Studio

ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "runs.cli"]
ENTRY_POINT = Path(sys.executable).with_name("studio")


def cli(
    *args: str,
    env: dict[str, str],
    cwd: Path | str | None = None,
    input_text: str | None = None,
    timeout: float = 60,
    entry_point: bool = False,
) -> subprocess.CompletedProcess:
    """`studio ARGS...` as a subprocess (through `python -m runs.cli`, or the installed console script).

    It runs in the isolated HOME unless `cwd` is given, so no config.json of the checkout is found.
    """
    command = [str(ENTRY_POINT)] if entry_point else CLI
    return subprocess.run(
        [*command, *args],
        env=env,
        cwd=cwd or env["HOME"],
        input=input_text,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def shell(command_line: str, *, env: dict[str, str], cwd: Path | str | None = None, timeout: float = 60):
    """A command line written as a user types it (`studio run ... --query "..."`), run by bash.

    The shell does the quoting, so the how-to's commands are tested verbatim.
    """
    assert command_line.startswith("studio ")
    line = " ".join(shlex.quote(part) for part in CLI) + command_line.removeprefix("studio")
    return subprocess.run(
        ["bash", "-c", line], env=env, cwd=cwd or env["HOME"], capture_output=True, text=True, timeout=timeout
    )


def assert_one_line_error(result: subprocess.CompletedProcess, code: int, *needles: str) -> str:
    """The command failed with `code`, printing exactly one line, `error: ...`, and no traceback."""
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def cli_env(tmp_path) -> dict[str, str]:
    """An environment with a home of its own and no studio settings from outside."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STUDIO_", "AZUREML_"))}
    home = tmp_path / "home"
    home.mkdir()
    env.update(
        {
            "HOME": str(home),
            "STUDIO_CONFIG_HOME": str(home / ".config" / "run-studio"),
            "PYTHONPATH": str(ROOT),
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


@pytest.fixture
def logged_in(cli_env, live_server, alice, alice_key) -> dict[str, str]:
    """cli_env after `studio login` as alice (member of team-a only)."""
    result = cli("login", "--url", live_server.url, "--token", alice_key, env=cli_env)
    assert result.returncode == 0, result.stderr
    return cli_env


@pytest.fixture
def studio(live_server, alice, alice_key) -> Studio:
    """Plain HTTP access as alice, to set up and check what the CLI does."""
    return Studio(live_server.url, alice_key)


def new_run(studio: Studio, experiment: str, *, complete: bool = True, **fields) -> str:
    """An interactive run created through the API (tags and properties allowed), Completed by default."""
    run = studio.ok("POST", f"workspaces/{studio.workspace}/experiments/{experiment}/runs/", json=fields)
    if complete:
        studio.ok("POST", f"runs/{run['run_id']}/complete/")
    return run["run_id"]
