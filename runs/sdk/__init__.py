"""Run Studio's Python SDK: the Azure ML SDK v1 run API, against a self-hosted studio.

    from runs.sdk import Workspace, Experiment, Run, ScriptRunConfig

Imports no Django; needs only `requests` (and `pathspec` to snapshot folders).
orjson is used when installed.
"""

from __future__ import annotations

VERSION = "1.0.0"

from runs.sdk.exceptions import (  # noqa: E402
    ActivityFailedException,
    AuthenticationException,
    AzureMLException,
    ExperimentExecutionException,
    NotFoundException,
    RunEnvironmentException,
    ServiceException,
    SnapshotException,
    StudioConnectionException,
    StudioException,
    UserErrorException,
)
from runs.sdk.experiment import Experiment  # noqa: E402
from runs.sdk.run import Run  # noqa: E402
from runs.sdk.script_run_config import RunConfiguration, ScriptRunConfig  # noqa: E402
from runs.sdk.workspace import ComputeTarget, Workspace  # noqa: E402

__all__ = [
    "VERSION",
    "ActivityFailedException",
    "AuthenticationException",
    "AzureMLException",
    "ComputeTarget",
    "Experiment",
    "ExperimentExecutionException",
    "NotFoundException",
    "Run",
    "RunConfiguration",
    "RunEnvironmentException",
    "ScriptRunConfig",
    "ServiceException",
    "SnapshotException",
    "StudioConnectionException",
    "StudioException",
    "UserErrorException",
    "Workspace",
]
