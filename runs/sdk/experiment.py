"""Experiment: a named group of runs in a workspace (v1 `azureml.core.Experiment`)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from runs.sdk._env import env_float
from runs.sdk._http import q
from runs.sdk.exceptions import UserErrorException

if TYPE_CHECKING:
    from runs.sdk.run import Run
    from runs.sdk.workspace import Workspace

HEARTBEAT_TIMEOUT_DEFAULT = 600.0


def heartbeat_timeout() -> float:
    """Seconds of silence after which the studio marks an SDK-driven run NotResponding."""
    return env_float("STUDIO_HEARTBEAT_TIMEOUT_SECONDS", HEARTBEAT_TIMEOUT_DEFAULT, minimum=5)


class Experiment:
    """`Experiment(workspace, name)` gets the experiment, creating it if it does not exist.

    Raises ServiceException if the name is not valid (1-255 letters, digits,
    '_' or '-', starting with a letter or digit).
    """

    def __init__(self, workspace: Workspace, name: str, _create: bool = True, _dto: dict | None = None, **kwargs: Any):
        self._workspace = workspace
        self._name = name
        self._client = workspace._client
        self._dto = _dto
        if _create and _dto is None:
            self._dto = self._client.post(f"workspaces/{q(workspace.name)}/experiments/", {"name": name}, retry=True)

    @property
    def workspace(self) -> Workspace:
        return self._workspace

    @property
    def name(self) -> str:
        return self._name

    @property
    def id(self) -> str:
        """Experiments are identified by name within their workspace."""
        return self._name

    @property
    def _path(self) -> str:
        return f"workspaces/{q(self._workspace.name)}/experiments/{q(self._name)}"

    @staticmethod
    def list(workspace: Workspace, experiment_name: str | None = None, **kwargs: Any) -> list[Experiment]:
        """The workspace's experiments (only `experiment_name` if given)."""
        items = workspace._client.get(f"workspaces/{q(workspace.name)}/experiments/")
        return [
            Experiment(workspace, item["name"], _create=False, _dto=item)
            for item in items
            if experiment_name is None or item["name"] == experiment_name
        ]

    # --- runs ------------------------------------------------------------------------------------

    def start_logging(
        self,
        *args: Any,
        run_id: str | None = None,
        display_name: str | None = None,
        description: str | None = None,
        tags: dict | None = None,
        outputs: str | bool | None = None,
        snapshot_directory: str | os.PathLike | None = None,
        **kwargs: Any,
    ) -> Run:
        """Start an interactive run: it is Running at once; log to it, then complete() it.

        `outputs`: the folder whose files are uploaded under outputs/ when the
        run ends (None or True: ./outputs if it exists; False: none).
        `snapshot_directory`: if given, that folder is snapshotted and its id
        recorded as the property ContentSnapshotId. The run heartbeats from a
        background thread (see runs.sdk._sender), so the studio notices when
        this process dies. Raises ServiceException (e.g. a run_id in use).
        """
        from runs.sdk.run import Run

        if args:
            raise UserErrorException("start_logging takes keyword arguments only (run_id=, display_name=, ...)")
        kwargs.pop("name", None)  # v1's deprecated name argument
        body: dict[str, Any] = {
            "run_id": run_id or str(uuid.uuid4()),
            "heartbeat_timeout_seconds": heartbeat_timeout(),
        }
        if display_name is not None:
            body["display_name"] = display_name
        if description is not None:
            body["description"] = description
        if tags:
            body["tags"] = _string_values(tags)
        dto = self._client.post(f"{self._path}/runs/", body)
        run = Run._from_dto(self, dto, outputs=True if outputs is None else outputs, interactive=True)
        if snapshot_directory is not None:
            from runs.sdk.snapshot import upload_snapshot

            sha = upload_snapshot(self._workspace, snapshot_directory)
            run.add_properties({"ContentSnapshotId": sha})
        return run

    def get_runs(
        self,
        type: str | None = None,
        tags: str | dict | None = None,
        properties: str | dict | None = None,
        include_children: bool = False,
    ) -> Iterator[Run]:
        """Runs of this experiment, newest first, as a generator (fetched in pages of 500).

        `tags`/`properties`: a str keeps runs that have that key (any value); a
        dict keeps runs where every pair is equal (None = the value is None).
        Anything else raises ValueError("Unknown filter type for run tags: ...")
        before any request. Filtering happens in the studio's database.
        """
        from runs.sdk.run import Run

        return Run.list(self, type=type, tags=tags, properties=properties, include_children=include_children)

    def submit(self, config: Any, tags: dict | None = None, **kwargs: Any) -> Run:
        """Submit a ScriptRunConfig: snapshot its source folder, queue the run; returns it (Queued).

        Raises ExperimentExecutionException (a UserErrorException) when the
        script is not inside source_directory and SnapshotException for a
        folder that cannot be snapshotted, both before anything is uploaded.
        """
        submit = getattr(config, "_submit", None)
        if submit is None:
            raise UserErrorException(f"cannot submit a {type(config).__name__}; pass a ScriptRunConfig")
        return submit(self, tags=tags, parent_run_id=kwargs.get("_parent_run_id"))

    def __repr__(self) -> str:
        return f"Experiment(Name: {self._name}, Workspace: {self._workspace.name})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Experiment) and (self._workspace, self._name) == (other._workspace, other._name)

    def __hash__(self) -> int:
        return hash((self._workspace, self._name))


def _string_values(pairs: dict) -> dict:
    """Tag/property values as the studio stores them: strings or None (v1 str()s other values)."""
    if not isinstance(pairs, dict):
        raise UserErrorException(f"expected a dict of key → value, not {type(pairs).__name__}")
    return {str(k): (v if v is None or isinstance(v, str) else str(v)) for k, v in pairs.items()}
