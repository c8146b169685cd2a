"""`studio folder attach`: bind a project folder to a workspace and experiment (v1 `az ml folder attach`)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runs.cli import runconfig
from runs.cli.errors import CliError, Exit
from runs.cli.output import Result

if TYPE_CHECKING:
    from runs.cli.app import Commands
    from runs.cli.context import Context


def register(commands: Commands) -> None:
    sub = commands.group("folder", "attach a project folder to a workspace and experiment")
    commands.command(
        sub,
        "attach",
        attach,
        "write .studio/config.json and sample run configurations in a project folder",
        description=(
            "Write <path>/.studio/config.json ({url, workspace_name, experiment_name}; never the token) so that "
            "commands and Workspace.from_config() run in this folder find the workspace, and the sample run "
            "configurations .studio/sklearn.runconfig and .studio/local.runconfig for `run submit-script -c NAME` "
            "(existing runconfig files are kept). The studio is the one of env STUDIO_URL, else the one `studio login` "
            "saved, else the one of a config.json already found. The workspace is checked and the experiment "
            "created if missing."
        ),
        epilog="example:\n  studio folder attach -w myworkspace -e testexperiment\n"
        "  studio run submit-script -c sklearn train.py",
        experiment=True,
    )


def attach(args: Any, ctx: Context) -> Any:
    from runs.sdk import Experiment

    folder = ctx.path
    if not folder.is_dir():
        raise CliError(f"--path {folder} is not a folder; pass the project folder to attach", Exit.USAGE)
    ctx.prefer_login_url = True
    ws = ctx.workspace()
    details = ws.get_details()  # checks the workspace exists before anything is written
    name = args.experiment_name or experiment_name_for(folder)
    Experiment(ws, name)  # created if missing, as v1's attach does; an invalid name is refused here
    ws.experiment_name = name
    config_path = ws.write_config(folder)
    written = runconfig.write_samples(config_path.parent, details.get("default_compute_target"))
    return Result(
        {
            "configFile": str(config_path),
            "url": ws.url,
            "workspaceName": ws.name,
            "experimentName": name,
            "runconfigs": sorted(str(p) for p in config_path.parent.glob(f"*{runconfig.SUFFIX}")),
            "written": [str(p) for p in [config_path, *written]],
        }
    )


def experiment_name_for(folder: Path) -> str:
    """v1 names the experiment after the folder; characters an experiment name cannot hold become '-'."""
    base = re.sub(r"[^\w\-]", "-", folder.resolve().name).lstrip("-_")
    return base[:255] or "experiment"
