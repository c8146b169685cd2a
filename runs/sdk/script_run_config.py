"""ScriptRunConfig: what to run, from which folder, on which compute target (v1 names and defaults)."""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runs.sdk import snapshot
from runs.sdk._http import q
from runs.sdk.exceptions import ExperimentExecutionException, UserErrorException
from runs.sdk.experiment import _string_values

if TYPE_CHECKING:
    from runs.sdk.experiment import Experiment
    from runs.sdk.run import Run

log = logging.getLogger("runs.sdk")

MAX_RUN_DURATION_DEFAULT = 2592000  # 30 days, as in v1


class RunConfiguration:
    """The parts of v1's RunConfiguration the studio uses: script, arguments, command, target,
    environment_variables, max_run_duration_seconds. Conda/Docker settings are not used: the
    script runs with the Python of the worker's host."""

    def __init__(
        self,
        script: str | None = None,
        arguments: list | None = None,
        command: str | list | None = None,
        target: Any = "local",
        environment_variables: dict | None = None,
        max_run_duration_seconds: int | None = None,
        **kwargs: Any,
    ) -> None:
        self.script = script
        self.arguments = list(arguments or [])
        self.command = command
        self.target = target
        self.environment_variables = dict(environment_variables or {})
        self.max_run_duration_seconds = max_run_duration_seconds
        self.environment = kwargs.get("environment")


class ScriptRunConfig:
    """How to submit a script: `exp.submit(ScriptRunConfig(source_directory='.', script='train.py'))`.

    - `script` (a path inside `source_directory`) with `arguments`, or a
      `command` (a string or list run by /bin/sh) instead.
    - `compute_target`: a name or a ComputeTarget (default: the workspace's default).
    - `environment`: only its `environment_variables` (if it has them) are used.
    - `environment_variables`: extra variables for the script (not STUDIO_* / AZUREML_*).
    - `max_run_duration_seconds`: the run is stopped after this long (default 30 days).
    - `cancel_grace_seconds`: time between SIGTERM and SIGKILL on cancel (studio default 10 s).
    - `run_config`: a RunConfiguration; as in v1, compute_target, environment and
      max_run_duration_seconds are then taken from it (with a warning if also given),
      while script, arguments and command given here override it.
    """

    def __init__(
        self,
        source_directory: str | os.PathLike,
        script: str | None = None,
        arguments: list | None = None,
        run_config: Any = None,
        compute_target: Any = None,
        environment: Any = None,
        max_run_duration_seconds: int | None = MAX_RUN_DURATION_DEFAULT,
        command: str | list | None = None,
        environment_variables: dict | None = None,
        cancel_grace_seconds: float | None = None,
        **kwargs: Any,
    ) -> None:
        ignored = sorted(k for k, v in kwargs.items() if v is not None and not k.startswith("_"))
        if ignored:
            log.warning("ScriptRunConfig: %s not supported by the studio; ignored", ", ".join(ignored))
        self.source_directory = str(source_directory)
        self.run_config = run_config
        if run_config is not None:
            given = [
                name
                for name, value in (
                    ("compute_target", compute_target),
                    ("environment", environment),
                    ("max_run_duration_seconds", None if max_run_duration_seconds == MAX_RUN_DURATION_DEFAULT else 1),
                )
                if value is not None
            ]
            if given:
                log.warning("ScriptRunConfig: %s ignored because run_config is given", ", ".join(given))
            compute_target = getattr(run_config, "target", None)
            environment = getattr(run_config, "environment", None)
            max_run_duration_seconds = getattr(run_config, "max_run_duration_seconds", None) or (
                MAX_RUN_DURATION_DEFAULT
            )
            script = script if script is not None else getattr(run_config, "script", None)
            arguments = arguments if arguments is not None else getattr(run_config, "arguments", None)
            command = command if command is not None else getattr(run_config, "command", None)
        self.script = script
        self.arguments = list(arguments or [])
        self.command = command
        self.compute_target = compute_target
        self.environment = environment
        self.max_run_duration_seconds = max_run_duration_seconds
        self.cancel_grace_seconds = cancel_grace_seconds
        variables: dict = {}
        variables.update(getattr(environment, "environment_variables", None) or {})
        variables.update(getattr(run_config, "environment_variables", None) or {})
        variables.update(environment_variables or {})
        self.environment_variables = variables

    @property
    def target_name(self) -> str | None:
        target = self.compute_target
        if target is None or target == "":
            return None
        return target if isinstance(target, str) else str(getattr(target, "name", target))

    def _script_in_snapshot(self) -> str | None:
        """The script's path inside the snapshot; ExperimentExecutionException if it is not in the folder."""
        if self.script is None:
            return None
        root = Path(self.source_directory)
        path = root / self.script
        relative = Path(os.path.normpath(self.script)).as_posix()
        if (
            Path(self.script).is_absolute()
            or relative.startswith("../")
            or not path.is_file()
            or not path.resolve().is_relative_to(root.resolve())
        ):
            raise ExperimentExecutionException(
                f"{path} script path doesn't exist. The script should be inside the project folder"
            )
        return relative

    def _submit(self, experiment: Experiment, tags: dict | None = None, parent_run_id: str | None = None) -> Run:
        """Check, snapshot, upload (unless stored already), then queue the run. Returns it (Queued)."""
        from runs.sdk.run import Run

        if bool(self.script) == bool(self.command):
            raise UserErrorException("ScriptRunConfig needs either script or command")
        script = self._script_in_snapshot()
        with tempfile.TemporaryFile() as tmp:
            sha, files = snapshot.build(self.source_directory, tmp)
            if script is not None and script not in {f.name for f in files}:
                raise ExperimentExecutionException(
                    f"{script} is excluded from the snapshot by .amlignore/.gitignore, so it cannot run; "
                    "remove the rule that matches it"
                )
            snapshot.ensure_uploaded(experiment.workspace, sha, tmp)
        body: dict[str, Any] = {
            "snapshot": sha,
            "arguments": [str(a) for a in self.arguments],
            "environment_variables": {str(k): str(v) for k, v in self.environment_variables.items()},
            "max_run_duration_seconds": self.max_run_duration_seconds,
            "cancel_grace_seconds": self.cancel_grace_seconds,
            "compute_target": self.target_name,
            "parent_run_id": parent_run_id,
        }
        if script is not None:
            body["script"] = script
        else:
            body["command"] = self.command
        if tags:
            body["tags"] = _string_values(tags)
        body = {k: v for k, v in body.items() if v is not None}
        path = f"workspaces/{q(experiment.workspace.name)}/experiments/{q(experiment.name)}/submit/"
        dto = experiment.workspace._client.post(path, body)
        return Run._from_dto(experiment, dto)

    def __repr__(self) -> str:
        what = f"script={self.script!r}" if self.script else f"command={self.command!r}"
        return f"ScriptRunConfig(source_directory={self.source_directory!r}, {what}, target={self.target_name!r})"
