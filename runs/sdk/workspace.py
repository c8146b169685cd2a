"""Workspace: which studio, which workspace, with which token (v1 `azureml.core.Workspace`)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runs.sdk import credentials
from runs.sdk._env import env_str
from runs.sdk._http import HttpClient, q
from runs.sdk.exceptions import UserErrorException

if TYPE_CHECKING:
    from runs.sdk.experiment import Experiment

CONFIG_FILE = "config.json"
CONFIG_FOLDERS = ("", ".studio", ".azureml")  # searched in this order in every folder, walking up
RUN_ENV = ("STUDIO_URL", "STUDIO_RUN_TOKEN", "STUDIO_WORKSPACE", "STUDIO_RUN_ID")


@dataclass(frozen=True)
class ComputeTarget:
    """A registered compute target (`ws.compute_targets[name]`); pass it or its name to ScriptRunConfig."""

    name: str
    kind: str = "local"
    max_concurrent_runs: int = 1
    description: str = ""

    def __str__(self) -> str:
        return self.name


def in_submitted_run() -> bool:
    """True inside a script the studio's runner started (it sets STUDIO_URL, STUDIO_RUN_TOKEN, ...)."""
    return all(os.environ.get(name) for name in RUN_ENV)


class Workspace:
    """A workspace on a studio server, reached with an API token.

    `Workspace(url=..., name=..., token=...)` or, as in v1, `Workspace.from_config()`.
    The token, when not given, is taken from env STUDIO_TOKEN, else from the
    user's credentials file written by `studio login` (see runs.sdk.credentials),
    else (inside a submitted run, for that run's studio) the run's own token.
    Construction checks that the workspace exists and is visible to the token:
    UserErrorException if no token is found, NotFoundException if the
    workspace is not visible, StudioConnectionException if the studio is down.
    """

    def __init__(
        self,
        url: str | None = None,
        name: str | None = None,
        token: str | None = None,
        *,
        experiment_name: str | None = None,
        _validate: bool = True,
        **kwargs: Any,
    ) -> None:
        name = name or kwargs.pop("workspace_name", None)
        url = env_str("STUDIO_URL") if url is None else url
        url = url or credentials.default_url()
        if not url:
            raise UserErrorException(
                "no studio URL: pass Workspace(url=...), set STUDIO_URL, or run `studio login --url URL --token KEY`"
            )
        if not name:
            raise UserErrorException("no workspace name: pass Workspace(name=...) or set workspace_name in config.json")
        self._url = credentials.normalize_url(url)
        self._name = name
        self._token = token or _token_for(self._url)
        self.experiment_name = experiment_name
        self._client = HttpClient(self._url, self._token)
        self._details: dict | None = None
        self._config_path: Path | None = None  # the config.json it came from, if any
        if _validate:
            self._details = self._client.get(f"workspaces/{q(name)}/")

    # --- construction from a file -----------------------------------------------------------------

    @classmethod
    def from_config(
        cls, path: str | os.PathLike | None = None, auth: Any = None, _logger: Any = None, _file_name: str | None = None
    ) -> Workspace:
        """The workspace described by a config.json.

        If `path` is a file it is read. Otherwise `config.json` is looked for in
        `path` (default: the current folder), then in its `.studio/`, then in
        its `.azureml/`, and so on in each parent folder up to the root. The
        file holds `url`, `workspace_name`, and optionally `token` and
        `experiment_name`. Env STUDIO_URL overrides the URL; env STUDIO_TOKEN
        overrides the token; `auth` may be a token string too.

        Inside a submitted run with no config file found, the run's studio,
        workspace and token (env STUDIO_URL, STUDIO_WORKSPACE,
        STUDIO_RUN_TOKEN) are used. Raises UserErrorException saying where it
        looked when there is no config.
        """
        file_name = _file_name or CONFIG_FILE
        start = Path(path).expanduser() if path is not None else Path.cwd()
        if start.is_file():
            found: Path | None = start
            searched = [start]
        else:
            found, searched = _search(start.resolve(), file_name)
        if found is None:
            if in_submitted_run():
                return cls(
                    url=os.environ["STUDIO_URL"],
                    name=os.environ["STUDIO_WORKSPACE"],
                    token=os.environ["STUDIO_RUN_TOKEN"],
                    experiment_name=os.environ.get("STUDIO_EXPERIMENT") or None,
                )
            where = ", ".join(str(p) for p in searched[:3])
            raise UserErrorException(
                f"The workspace configuration file {file_name} could not be found in {start} or its parent folders "
                f"(looked in {where}, ... and each parent's .studio/ and .azureml/). Create one with "
                "`studio folder attach -w WORKSPACE -e EXPERIMENT`, or pass the path of the config.json that "
                "`make run` wrote (var/config.json): Workspace.from_config('var/config.json')."
            )
        config = _read_config(found)
        token = auth if isinstance(auth, str) and auth else None
        token = env_str("STUDIO_TOKEN") or token or config.get("token") or None
        url = env_str("STUDIO_URL") or config.get("url")
        if not url:
            url = credentials.default_url()
        if not url:
            raise UserErrorException(f"{found} has no 'url'; add the studio's address, e.g. http://127.0.0.1:8000")
        name = config.get("workspace_name") or config.get("workspace")
        if not name:
            raise UserErrorException(f"{found} has no 'workspace_name'; add the name of your workspace")
        workspace = cls(url=url, name=name, token=token, experiment_name=config.get("experiment_name") or None)
        workspace._config_path = found
        return workspace

    # --- what a workspace has ----------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self._name

    @property
    def url(self) -> str:
        """The studio's base URL, e.g. http://127.0.0.1:8000."""
        return self._url

    @property
    def compute_targets(self) -> dict[str, ComputeTarget]:
        """{name: ComputeTarget} of the targets registered in this workspace (fetched each time)."""
        targets = self._client.get(f"workspaces/{q(self._name)}/computes/")
        return {
            t["name"]: ComputeTarget(
                name=t["name"],
                kind=t.get("kind", "local"),
                max_concurrent_runs=int(t.get("max_concurrent_runs") or 1),
                description=t.get("description") or "",
            )
            for t in targets
        }

    @property
    def experiments(self) -> dict[str, Experiment]:
        """{name: Experiment} of the workspace's experiments (fetched each time)."""
        from runs.sdk.experiment import Experiment

        return {e.name: e for e in Experiment.list(self)}

    def get_details(self) -> dict:
        """The workspace as the studio describes it (name, description, default_compute_target, ...)."""
        self._details = self._client.get(f"workspaces/{q(self._name)}/")
        return dict(self._details)

    def write_config(self, path: str | os.PathLike | None = None, file_name: str | None = None) -> Path:
        """Write `.studio/config.json` under `path` (default: the current folder), without the token."""
        folder = Path(path or ".") / ".studio"
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / (file_name or CONFIG_FILE)
        data = {"url": self._url, "workspace_name": self._name}
        if self.experiment_name:
            data["experiment_name"] = self.experiment_name
        target.write_text(json.dumps(data, indent=2) + "\n")
        return target

    def __repr__(self) -> str:
        return f"Workspace.create(name='{self._name}', url='{self._url}')"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Workspace) and (self._url, self._name) == (other._url, other._name)

    def __hash__(self) -> int:
        return hash((self._url, self._name))


def _search(start: Path, file_name: str) -> tuple[Path | None, list[Path]]:
    searched: list[Path] = []
    for folder in (start, *start.parents):
        for sub in CONFIG_FOLDERS:
            candidate = folder / sub / file_name if sub else folder / file_name
            searched.append(candidate)
            if candidate.is_file():
                return candidate, searched
    return None, searched


def _read_config(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UserErrorException(f"cannot read the workspace configuration {path}: {exc}") from None
    except ValueError as exc:
        raise UserErrorException(f"the workspace configuration {path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise UserErrorException(f"the workspace configuration {path} must be a JSON object")
    return data


def _token_for(url: str) -> str:
    token = env_str("STUDIO_TOKEN") or credentials.token_for(url)
    if not token and in_submitted_run() and credentials.normalize_url(os.environ["STUDIO_URL"]) == url:
        token = os.environ["STUDIO_RUN_TOKEN"]
    if not token:
        raise UserErrorException(
            f"no API token for {url}: put 'token' in config.json, set STUDIO_TOKEN, or run "
            f"`studio login --url {url} --token KEY` (create a key on the studio's Tokens page)"
        )
    return token
