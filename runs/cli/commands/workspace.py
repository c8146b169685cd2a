"""`studio experiment list` and `studio compute list|create|delete`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from runs.cli.args import positive_int
from runs.cli.errors import Exit
from runs.cli.output import Result
from runs.cli.records import compute_record, computes_table, experiment_record, experiments_table
from runs.sdk._http import q

if TYPE_CHECKING:
    from runs.cli.app import Commands
    from runs.cli.context import Context


def register(commands: Commands) -> None:
    experiments = commands.group("experiment", "experiments of a workspace")
    commands.command(
        experiments,
        "list",
        experiment_list,
        "list the workspace's experiments",
        epilog="example:\n  studio experiment list -w myworkspace -o table",
    )

    computes = commands.group(
        "compute",
        "compute targets: where submitted scripts run",
        description="Compute targets: where submitted scripts run. Each has a Celery queue of its own; start a "
        "worker for it with `python manage.py worker --target NAME` on the host that should run its scripts.",
    )
    commands.command(computes, "list", compute_list, "list the workspace's compute targets")
    create = commands.command(
        computes,
        "create",
        compute_create,
        "register a compute target",
        epilog="example:\n  studio compute create --name gpu-cluster --max-concurrency 4 --description 'two GPUs'",
    )
    create.add_argument("--name", "-n", required=True, help="2-32 letters, digits or '-'")
    create.add_argument(
        "--max-concurrency",
        type=positive_int,
        metavar="N",
        help="how many of its runs may execute at once (default 1); more wait Queued",
    )
    create.add_argument("--description", help="free text shown in the studio")
    create.add_argument("--kind", choices=["local"], help="how scripts run: local = processes on the worker's host")
    delete = commands.command(
        computes, "delete", compute_delete, "delete a compute target that no active run uses", aliases=["remove"]
    )
    delete.add_argument("--name", "-n", required=True, help="the target to delete (the default 'local' cannot be)")


def experiment_list(args: Any, ctx: Context) -> Any:
    items = ctx.client.get(f"workspaces/{q(ctx.workspace_name)}/experiments/")
    return Result([experiment_record(item) for item in items], default_output="table", table=experiments_table)


def compute_list(args: Any, ctx: Context) -> Any:
    items = ctx.client.get(f"workspaces/{q(ctx.workspace_name)}/computes/")
    return Result([compute_record(item) for item in items], default_output="table", table=computes_table)


def compute_create(args: Any, ctx: Context) -> Any:
    body: dict[str, Any] = {"name": args.name}
    if args.max_concurrency is not None:
        body["max_concurrent_runs"] = args.max_concurrency
    if args.description is not None:
        body["description"] = args.description
    if args.kind is not None:
        body["kind"] = args.kind
    item = ctx.client.post(f"workspaces/{q(ctx.workspace_name)}/computes/", body)
    return Result(compute_record(item), table=computes_table)


def compute_delete(args: Any, ctx: Context) -> Any:
    ctx.client.request("DELETE", f"workspaces/{q(ctx.workspace_name)}/computes/{q(args.name)}/")
    return Exit.OK
