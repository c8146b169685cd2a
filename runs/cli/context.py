"""Which studio, token, workspace and experiment a command talks to.

Resolution, first match wins (the same places `Workspace.from_config()` looks):

- config file: `--path` if it is a file, else the first `config.json`,
  `.studio/config.json` or `.azureml/config.json` in `--path` (default: the
  current folder) or one of its parents;
- studio URL: env STUDIO_URL, the config file's `url`, the default server of
  `studio login` (for `folder attach`, which writes a new config, the server of
  `studio login` comes before the config file it replaces);
- token: env STUDIO_TOKEN, the config file's `token` (the `var/config.json`
  that `make run` writes has one), the token `studio login` saved for that URL;
- workspace: `-w`, the config file's `workspace_name`, env STUDIO_WORKSPACE,
  else your only workspace;
- experiment: `-e`, the config file's `experiment_name`, env STUDIO_EXPERIMENT.

Tokens are never printed, not even with --verbose or --debug.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from runs.cli.errors import LOGIN_HINT, CliError, Exit
from runs.sdk import credentials
from runs.sdk._http import HttpClient
from runs.sdk.exceptions import UserErrorException
from runs.sdk.workspace import CONFIG_FILE, CONFIG_FOLDERS, Workspace

log = logging.getLogger("runs.cli")

RETRY_ENV = "STUDIO_HTTP_RETRY_SECONDS"
ONE_SHOT_RETRY_SECONDS = 3.0  # a one-off command says "unreachable" after ~3 s rather than the SDK's 10 s
FOLLOW_RETRY_SECONDS = 60.0  # while streaming a long run, ride out a studio restart
_USER_RETRY = RETRY_ENV in os.environ


def retry_seconds(seconds: float) -> None:
    """How long calls that are safe to repeat retry an unreachable studio (the SDK reads env
    STUDIO_HTTP_RETRY_SECONDS on every request). A value the user set in the environment wins."""
    if not _USER_RETRY:
        os.environ[RETRY_ENV] = f"{seconds:g}"


def _env(name: str) -> str | None:
    value = os.environ.get(name, "").strip()
    return value or None


class Context:
    """Lazily resolved connection settings for one command (see the module docstring)."""

    def __init__(self, args: Any) -> None:
        self.args = args
        raw_path = getattr(args, "path", None)
        self.path = Path(raw_path).expanduser() if raw_path else Path.cwd()
        self._config: tuple[Path | None, dict] | None = None
        self._client: HttpClient | None = None
        self._workspace_name: str | None = None
        self._url: str | None = None
        # For error messages: where the URL and the token came from, so the message names what to fix.
        self.url_source: str | None = None
        self.token_source: str | None = None
        # `folder attach` writes a new config: the server you logged in to beats the one it replaces.
        self.prefer_login_url = False

    # --- the config file ---------------------------------------------------------------------

    @property
    def config_path(self) -> Path | None:
        return self._load_config()[0]

    @property
    def config(self) -> dict:
        return self._load_config()[1]

    def _load_config(self) -> tuple[Path | None, dict]:
        if self._config is None:
            found = find_config(self.path)
            data = read_config(found) if found else {}
            if found:
                log.info("using the configuration in %s", found)
            self._config = (found, data)
        return self._config

    @property
    def project_root(self) -> Path:
        """The attached folder: where `.studio/` (or `.azureml/`) is, else --path / the current folder."""
        found = self.config_path
        if found is None:
            return self.path if self.path.is_dir() else self.path.parent
        if found.parent.name in (".studio", ".azureml"):
            return found.parent.parent
        return found.parent

    # --- the studio ----------------------------------------------------------------------------

    @property
    def url(self) -> str:
        if self._url is None:
            self._url, self.url_source = self._find_url()
        return self._url

    def _find_url(self) -> tuple[str, str]:
        if self.prefer_login_url and (url := _credentials(credentials.default_url)) and not _env("STUDIO_URL"):
            return credentials.normalize_url(url), "`studio login`"
        if url := _env("STUDIO_URL"):
            return credentials.normalize_url(url), "env STUDIO_URL"
        if url := self.config.get("url"):
            return credentials.normalize_url(str(url)), str(self.config_path)
        if url := _credentials(credentials.default_url):
            return credentials.normalize_url(url), "`studio login`"
        raise CliError(
            f"no studio configured: {LOGIN_HINT}, or pass --path to a config.json (`make run` writes "
            "var/config.json), or set STUDIO_URL and STUDIO_TOKEN",
            Exit.AUTH,
        )

    @property
    def token(self) -> str:
        token, self.token_source = self._find_token(self.url)
        return token

    def _find_token(self, url: str) -> tuple[str, str]:
        if token := _env("STUDIO_TOKEN"):
            return token, _said("env STUDIO_TOKEN")
        if token := self.config.get("token"):
            return str(token), _said(str(self.config_path))
        if token := _credentials(credentials.token_for, url):
            return token, _said(f"`studio login` ({credentials.credentials_path()})")
        # Inside a submitted run, the run's own token reaches the run's studio.
        run_url = _env("STUDIO_URL")
        if run_url and credentials.normalize_url(run_url) == url and (token := _env("STUDIO_RUN_TOKEN")):
            return token, _said("the submitted run (env STUDIO_RUN_TOKEN)")
        raise CliError(f"no API token for {url}: {LOGIN_HINT}, or set STUDIO_TOKEN", Exit.AUTH)

    @property
    def client(self) -> HttpClient:
        if self._client is None:
            self._client = HttpClient(self.url, self.token)
            log.info("studio %s", self._client.base_url)
            if log.isEnabledFor(logging.DEBUG):
                self._client.session.hooks["response"].append(_log_response)
        return self._client

    # --- workspace and experiment ----------------------------------------------------------------

    @property
    def workspace_name(self) -> str:
        if self._workspace_name is None:
            name = (
                getattr(self.args, "workspace_name", None)
                or self.config.get("workspace_name")
                or self.config.get("workspace")
                or _env("STUDIO_WORKSPACE")
            )
            if not name:
                name = self._only_workspace()
            log.info("workspace %s", name)
            self._workspace_name = str(name)
        return self._workspace_name

    def _only_workspace(self) -> str:
        names = self.client.get("me/").get("workspaces") or []
        if len(names) == 1:
            return names[0]
        if not names:
            raise CliError(
                f"the user of this token is not a member of any workspace on {self.url}; "
                "ask a workspace owner to add you",
                Exit.AUTH,
            )
        raise CliError(
            f"no workspace chosen and you are a member of several ({', '.join(names)}): pass -w NAME, "
            "or run `studio folder attach -w NAME` in your project folder",
            Exit.AUTH,
        )

    def experiment_name(self, *, required: bool) -> str | None:
        name = (
            getattr(self.args, "experiment_name", None)
            or self.config.get("experiment_name")
            or _env("STUDIO_EXPERIMENT")
        )
        if not name and required:
            raise CliError(
                "no experiment chosen: pass -e NAME, or run `studio folder attach -w WORKSPACE -e NAME` "
                "in your project folder",
                Exit.USAGE,
            )
        return str(name) if name else None

    def workspace(self) -> Workspace:
        """An SDK Workspace for the resolved settings, not validated (the next call reports a bad name)."""
        ws = Workspace(url=self.url, name=self.workspace_name, token=self.token, _validate=False)
        # One session per command: the SDK objects share the CLI's (and its debug logging).
        ws._client = self.client
        return ws


def _said(source: str) -> str:
    log.info("token from %s", source)
    return source


def find_config(start: Path) -> Path | None:
    """`start` if it is a file, else the first config.json found walking up (as Workspace.from_config)."""
    if start.is_file():
        return start
    if not start.exists():
        raise CliError(f"--path {start} does not exist; pass your project folder or a config.json", Exit.USAGE)
    folder = start.resolve()
    for candidate_dir in (folder, *folder.parents):
        for sub in CONFIG_FOLDERS:
            candidate = candidate_dir / sub / CONFIG_FILE if sub else candidate_dir / CONFIG_FILE
            if candidate.is_file():
                return candidate
    return None


def read_config(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise CliError(f"cannot read the configuration {path}: {exc.strerror or exc}", Exit.AUTH) from None
    except ValueError as exc:
        raise CliError(
            f"the configuration {path} is not valid JSON ({exc}); fix it, or write it again with "
            "`studio folder attach -w WORKSPACE`",
            Exit.AUTH,
        ) from None
    if not isinstance(data, dict):
        raise CliError(f"the configuration {path} must hold a JSON object", Exit.AUTH)
    return data


def _credentials(function: Any, *args: Any) -> Any:
    # A broken credentials file is a configuration problem, reported as such.
    try:
        return function(*args)
    except UserErrorException as exc:
        raise CliError(exc.message, Exit.AUTH) from None


def _log_response(response: Any, *args: Any, **kwargs: Any) -> None:
    request = response.request
    elapsed = response.elapsed.total_seconds() * 1000 if response.elapsed else 0.0
    log.debug(
        "HTTP %s %s -> %s (%.0f ms, %s bytes)",
        request.method,
        request.url,
        response.status_code,
        elapsed,
        response.headers.get("Content-Length", "?"),
    )
