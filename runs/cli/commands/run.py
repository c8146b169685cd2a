"""`studio run ...`: submit, list, show, cancel, fail, update, logs, download (v1 `az ml run`)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from runs.cli import runconfig
from runs.cli.args import key_equals_value, key_value, positive_int, statuses
from runs.cli.context import FOLLOW_RETRY_SECONDS, retry_seconds
from runs.cli.errors import CliError, Exit
from runs.cli.output import Result, write_err
from runs.cli.records import minimal_run_record, run_detail_record, run_record, runs_table
from runs.sdk._http import UPLOAD_TIMEOUT, HttpClient, q
from runs.sdk.exceptions import NotFoundException

if TYPE_CHECKING:
    from runs.cli.app import Commands
    from runs.cli.context import Context

log = logging.getLogger("runs.cli")

TERMINAL = frozenset({"Completed", "Failed", "Canceled"})
DRIVER_LOG = "azureml-logs/70_driver_log.txt"
USER_LOG = "logs/user_log.txt"
PAGE_MAX = 500  # the API's largest page
LAST_DEFAULT = 10  # as `az ml run list`


def register(commands: Commands) -> None:
    sub = commands.group("run", "submit, list, inspect and control runs")

    submit = commands.command(
        sub,
        "submit-script",
        submit_script,
        "submit a script as a run; stream its log until it ends (unless --async)",
        description=(
            "Snapshot the source folder (honouring .amlignore, else .gitignore), upload it and queue SCRIPT on a "
            "compute target. Without --async, stream the run's driver log until it ends and exit 0 if it "
            "Completed, 1 if it Failed or was Canceled; Ctrl-C stops following and leaves the run running. "
            "Options go before SCRIPT: everything after SCRIPT is passed to the script."
        ),
        epilog=(
            "examples:\n"
            "  studio run submit-script -c sklearn -e testexperiment train.py --epochs 3\n"
            "  studio run submit-script --async --tag owner=me train.py\n\n"
            "values come from the run configuration (-c), then these options override them: the script and its\n"
            "arguments (arguments after SCRIPT replace the runconfig's; with none, the runconfig's are used),\n"
            "--target, --env."
        ),
        experiment=True,
    )
    submit.add_argument(
        "-c",
        "--run-configuration-name",
        "--runconfig",
        dest="runconfig",
        metavar="NAME",
        help="a run configuration: .studio/NAME.runconfig (written by `folder attach`), or a .runconfig path",
    )
    submit.add_argument(
        "--target",
        "--ct",
        "--compute-target",
        dest="target",
        metavar="NAME",
        help="compute target (default: the runconfig's, else the workspace's default)",
    )
    submit.add_argument(
        "--source-directory",
        metavar="DIR",
        help="folder to snapshot and run the script from (default: --path or the current folder)",
    )
    submit.add_argument(
        "--async", dest="run_async", action="store_true", help="return once the run is queued; print the run"
    )
    submit.add_argument(
        "--tag", "--tags", dest="tags", action="append", type=key_value, default=[], metavar="KEY[=VALUE]",
        help="tag the run (repeatable)",
    )  # fmt: skip
    submit.add_argument(
        "--env", action="append", type=key_equals_value, default=[], metavar="NAME=VALUE",
        help="environment variable for the script (repeatable)",
    )  # fmt: skip
    submit.add_argument("script", nargs="?", help="the script, relative to the source directory")
    submit.add_argument("arguments", nargs=argparse.REMAINDER, help="arguments passed to the script")

    listing = commands.command(
        sub,
        "list",
        run_list,
        "list runs, newest first (top-level runs unless --parent-run-id)",
        description=(
            "List the runs of an experiment (or of the whole workspace when no experiment is set), newest first. "
            f"Only the newest --last N (default {LAST_DEFAULT}) are fetched, except that with --query and no "
            "--last every run is fetched so the query sees them all. --status, --tags, --properties and "
            "--compute-target filter in the studio's database. With --verbose, a continuation token for the next "
            "page is printed to stderr when more runs exist."
        ),
        epilog=(
            "examples:\n"
            "  studio run list --experiment-name experiment --status Failed --last 50\n"
            "  studio run list --experiment-name experiment --query \"[?properties.author=='azureml-user']\"\n"
            "  studio run list --experiment-name experiment --query "
            "\"[?tags.keys(@)[?starts_with(@, 'worth another look')]]\"\n"
            "  studio run list -e experiment --last 100 --verbose      # prints 'continuation: TOKEN' to stderr\n"
            "  studio run list -e experiment --last 100 --continuation TOKEN"
        ),
        experiment=True,
    )
    listing.add_argument("--status", type=statuses, action="append", help="only runs in this status (or S1,S2)")
    listing.add_argument(
        "--tags", "--tag", dest="tags", type=key_value, action="extend", nargs="+", metavar="KEY[=VALUE]",
        help="only runs with all these tag values; a single KEY alone: runs that have that tag",
    )  # fmt: skip
    listing.add_argument(
        "--properties", "--property", dest="properties", type=key_value, action="extend", nargs="+",
        metavar="KEY[=VALUE]", help="as --tags, for properties",
    )  # fmt: skip
    listing.add_argument("--compute-target", metavar="NAME", help="only runs submitted to this compute target")
    listing.add_argument("--parent-run-id", metavar="ID", help="list this run's children instead")
    listing.add_argument(
        "--last", type=positive_int, metavar="N", help=f"how many runs, newest first (default {LAST_DEFAULT})"
    )
    listing.add_argument("--all", action="store_true", help="every run (fetched in pages of 500)")
    listing.add_argument("--continuation", metavar="TOKEN", help="start after the page that printed TOKEN")
    listing.add_argument(
        "--minimal", action="store_true", help="only runId, runType, status, startTimeUtc, endTimeUtc, target, tags"
    )

    show = commands.command(sub, "show", run_show, "show one run: status, times, tags, properties, logs, error",
                            experiment=True)  # fmt: skip
    _run_id_option(show)

    cancel = commands.command(
        sub,
        "cancel",
        run_cancel,
        "cancel a run; a running script's process group is stopped (SIGTERM, then SIGKILL)",
        epilog="example:\n  studio run cancel -r RUNID",
        experiment=True,
    )
    _run_id_option(cancel)

    fail = commands.command(
        sub, "fail", run_fail, "mark a run Failed with an error message (a running script is stopped)",
        epilog="example:\n  studio run fail -r RUNID --message 'wrong data set'", experiment=True,
    )  # fmt: skip
    _run_id_option(fail)
    fail.add_argument("--message", "-m", help="the error recorded on the run")

    update = commands.command(
        sub, "update", run_update, "add, change or remove tags of a run",
        epilog="example:\n  studio run update -r RUNID --add-tag quality='fantastic run' --remove-tag draft",
        experiment=True,
    )  # fmt: skip
    _run_id_option(update)
    update.add_argument(
        "--add-tag", action="append", type=key_value, default=[], metavar="KEY[=VALUE]",
        help="set a tag (repeatable); KEY alone sets it with no value",
    )  # fmt: skip
    update.add_argument("--remove-tag", action="append", default=[], metavar="KEY", help="remove a tag (repeatable)")

    logs = commands.command(
        sub,
        "logs",
        run_logs,
        "print a run's log; --follow tails it until the run ends",
        description=(
            f"Print a run's log ({DRIVER_LOG}, the script's stdout and stderr, by default). With --follow, keep "
            "printing as it grows until the run ends, then exit 0 if it Completed and 1 otherwise. `studio run "
            "show` lists the run's logs (logFiles)."
        ),
        epilog="example:\n  studio run logs -r RUNID --follow",
        experiment=True,
    )
    _run_id_option(logs)
    logs.add_argument("--follow", "-f", action="store_true", help="keep printing until the run ends")
    logs.add_argument("--name", "-n", metavar="LOG", help=f"which log (default {DRIVER_LOG})")

    download = commands.command(
        sub,
        "download",
        run_download,
        "download a run's files (outputs/, uploads) and logs",
        epilog="example:\n  studio run download -r RUNID -d ./results",
        experiment=True,
    )
    _run_id_option(download)
    download.add_argument(
        "-d", "--directory", "--output-dir", dest="directory", metavar="DIR",
        help="where to save them (default: ./RUNID); names keep their folders, e.g. DIR/outputs/model.pkl",
    )  # fmt: skip
    download.add_argument("--prefix", help="only files whose names start with this, e.g. outputs/")
    download.add_argument("--no-logs", action="store_true", help="skip the logs")


def _run_id_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-r", "--run", "--run-id", dest="run_id", required=True, metavar="ID",
        help="the run's id (run ids are unique in the studio; -w/-e are accepted as in az and not needed)",
    )  # fmt: skip


# --- submit ------------------------------------------------------------------------------------------


def submit_script(args: Any, ctx: Context) -> Any:
    from runs.sdk import Experiment, ScriptRunConfig
    from runs.sdk.script_run_config import MAX_RUN_DURATION_DEFAULT

    config = None
    if args.runconfig:
        folder = ctx.path if ctx.path.is_dir() else Path.cwd()
        config = runconfig.load(runconfig.find(args.runconfig, [ctx.project_root, folder]))
        log.info("run configuration %s", config.path)
    script = args.script or (config.script if config else None)
    if not script:
        raise CliError(
            "no script: name it after the options (studio run submit-script [options] train.py [args...]) "
            "or set 'script' in the run configuration",
            Exit.USAGE,
        )
    arguments = list(args.arguments) or (list(config.arguments) if config else [])
    if args.source_directory:
        source = Path(args.source_directory).expanduser()
    else:
        source = ctx.path if ctx.path.is_dir() else Path.cwd()
    if not source.is_dir():
        raise CliError(f"--source-directory {source} is not a folder", Exit.USAGE)
    if not (source / script).is_file():  # checked before the experiment is created
        raise CliError(
            f"script {script} not found in {source.resolve()}: give its path relative to the source directory "
            "(--source-directory, default: the current folder)",
            Exit.USAGE,
        )
    variables = dict(config.environment_variables) if config else {}
    variables.update(dict(args.env))
    src = ScriptRunConfig(
        source_directory=str(source),
        script=script,
        arguments=arguments,
        compute_target=args.target or (config.target if config else None),
        environment_variables=variables,
        max_run_duration_seconds=(config.max_run_duration_seconds if config else None) or MAX_RUN_DURATION_DEFAULT,
        cancel_grace_seconds=config.cancel_grace_seconds if config else None,
    )
    experiment = Experiment(ctx.workspace(), ctx.experiment_name(required=True))  # created if missing, as in v1
    run = experiment.submit(src, tags=dict(args.tags) or None)
    log.info("submitted run %s", run.id)
    if args.run_async:
        return Result(run_record(run._info()))
    retry_seconds(FOLLOW_RETRY_SECONDS)
    try:
        details = run.wait_for_completion(show_output=True, wait_post_processing=True, raise_on_error=False)
    except KeyboardInterrupt:
        _stopped_following(run.id)
        return Exit.INTERRUPTED
    return _outcome(run.id, details.get("status"), details.get("error"))


def _stopped_following(run_id: str) -> None:
    sys.stdout.flush()
    write_err(
        f"Stopped following run {run_id}; it keeps running. Follow it with `studio run logs -r {run_id} --follow`, "
        f"cancel it with `studio run cancel -r {run_id}`."
    )


def _outcome(run_id: str, status: str | None, error: Any) -> int:
    """Exit code of a command that waited for a run, with the error on stderr when it did not complete."""
    if status == "Completed":
        return Exit.OK
    message = ""
    if isinstance(error, dict):
        inner = error.get("error") if isinstance(error.get("error"), dict) else error
        message = str(inner.get("message") or "")
    first_line = message.strip().splitlines()[0] if message.strip() else ""
    write_err(f"error: run {run_id} ended {status}" + (f": {first_line}" if first_line else ""))
    return Exit.RUN_FAILED


# --- list --------------------------------------------------------------------------------------------


def run_list(args: Any, ctx: Context) -> Any:
    params: dict[str, str] = {}
    for what in ("tags", "properties"):
        value = _label_filter(getattr(args, what), what)
        if value is not None:
            params[what] = value
    if args.status:
        params["status"] = ",".join(dict.fromkeys(s for group in args.status for s in group))
    if args.compute_target:
        params["compute_target"] = args.compute_target
    if args.parent_run_id:
        path = f"runs/{q(args.parent_run_id)}/children/"
    else:
        experiment = ctx.experiment_name(required=False)
        path = f"workspaces/{q(ctx.workspace_name)}/"
        path += f"experiments/{q(experiment)}/runs/" if experiment else "runs/"
    if args.all and args.last:
        raise CliError("give either --last N or --all, not both", Exit.USAGE)
    if args.all:
        limit = None
    elif args.last is not None:
        limit = args.last
    else:
        limit = None if getattr(args, "query", None) else LAST_DEFAULT
    runs, continuation = fetch_runs(ctx.client, path, params, limit, args.continuation)
    if continuation and (getattr(args, "verbose", False) or getattr(args, "debug", False)):
        write_err(
            f"continuation: {continuation} (more runs exist; pass --continuation {continuation} for the next page)"
        )
    make = minimal_run_record if args.minimal else run_record
    return Result([make(dto) for dto in runs], default_output="table", table=runs_table)


def fetch_runs(
    client: HttpClient, path: str, params: dict[str, str], limit: int | None, continuation: str | None
) -> tuple[list[dict], str | None]:
    """Up to `limit` runs (None: all) in pages of at most 500, and the token that continues after the last."""
    runs: list[dict] = []
    token = continuation
    while True:
        size = PAGE_MAX if limit is None else min(PAGE_MAX, limit - len(runs))
        query: dict[str, Any] = {**params, "page_size": size}
        if token:
            query["continuation"] = token
        page = client.get(path, params=query)
        runs.extend(page["results"])
        token = page.get("continuation")
        if not token or (limit is not None and len(runs) >= limit):
            return runs, token


def _label_filter(pairs: list[tuple[str, str | None]] | None, what: str) -> str | None:
    """The API's filter: a JSON object of key → value (all equal), or one key (present)."""
    import json

    if not pairs:
        return None
    bare = [key for key, value in pairs if value is None]
    if bare:
        if len(pairs) > 1:
            raise CliError(
                f"--{what}: give either KEY=VALUE pairs (all must match) or one KEY alone (the {what[:-1]} is "
                f"present), not both",
                Exit.USAGE,
            )
        return json.dumps(bare[0])
    return json.dumps(dict(pairs))


# --- one run -------------------------------------------------------------------------------------------


def run_show(args: Any, ctx: Context) -> Any:
    dto = ctx.client.get(f"runs/{q(args.run_id)}/")
    return Result(run_detail_record(dto, _portal_url(ctx.client, dto)), table=runs_table)


def run_cancel(args: Any, ctx: Context) -> Any:
    dto = ctx.client.post(f"runs/{q(args.run_id)}/cancel/", retry=True)
    log.info("run %s is %s", args.run_id, dto.get("status"))
    return Result(run_record(dto), table=runs_table)


def run_fail(args: Any, ctx: Context) -> Any:
    body = {"error_details": args.message} if args.message else {}
    dto = ctx.client.post(f"runs/{q(args.run_id)}/fail/", body, retry=True)
    return Result(run_record(dto), table=runs_table)


def run_update(args: Any, ctx: Context) -> Any:
    if not args.add_tag and not args.remove_tag:
        raise CliError("nothing to update: give --add-tag KEY=VALUE and/or --remove-tag KEY", Exit.USAGE)
    both = {key for key, _ in args.add_tag} & set(args.remove_tag)
    if both:
        raise CliError(f"tag {sorted(both)[0]!r} is both added and removed; keep one", Exit.USAGE)
    client = ctx.client
    path = f"runs/{q(args.run_id)}"
    if args.add_tag:
        client.patch(f"{path}/tags/", dict(args.add_tag))
    if args.remove_tag:
        client.post(f"{path}/tags/remove/", {"keys": list(args.remove_tag)}, retry=True)
    return Result(run_record(client.get(f"{path}/")), table=runs_table)


def _portal_url(client: HttpClient, dto: dict) -> str:
    return client.web_url(dto.get("url") or f"runs/{q(dto['run_id'])}/")


# --- logs ------------------------------------------------------------------------------------------------


def run_logs(args: Any, ctx: Context) -> Any:
    client = ctx.client
    dto = client.get(f"runs/{q(args.run_id)}/")
    name = args.name or default_log(dto)
    out = sys.stdout.buffer
    if not args.follow:
        try:
            out.write(read_log(client, args.run_id, name))
        except NotFoundException:
            existing = ", ".join(dto.get("log_files") or []) or "none yet"
            raise CliError(
                f"run {args.run_id} ({dto.get('status')}) has no log '{name}' (its logs: {existing}); "
                "pick one with --name, or wait for it with --follow",
                Exit.NOT_FOUND,
            ) from None
        out.flush()
        return Exit.OK
    retry_seconds(FOLLOW_RETRY_SECONDS)
    try:
        final = follow_log(client, args.run_id, name, out)
    except KeyboardInterrupt:
        out.flush()
        write_err(f"Stopped following run {args.run_id}; the run is not affected.")
        return Exit.INTERRUPTED
    return _outcome(args.run_id, final.get("status"), final.get("error"))


def default_log(dto: dict) -> str:
    """The script's output: the driver log of a submitted run; for others the user log, else their first log."""
    names = list(dto.get("log_files") or [])
    if DRIVER_LOG in names or dto.get("run_type") == "submitted" or not names:
        return DRIVER_LOG
    return USER_LOG if USER_LOG in names else names[0]


def read_chunk(client: HttpClient, run_id: str, name: str, offset: int) -> tuple[bytes, int]:
    """Bytes of a log after `offset` (at most 1 MiB) and the log's size. NotFoundException if it does not exist."""
    response = client.request("GET", f"runs/{q(run_id)}/logs/content/", params={"name": name, "offset": offset})
    return response.content, int(response.headers.get("X-Log-Size") or 0)


def read_log(client: HttpClient, run_id: str, name: str) -> bytes:
    chunks, offset = [], 0
    while True:
        data, size = read_chunk(client, run_id, name, offset)
        chunks.append(data)
        offset += len(data)
        if not data or offset >= size:
            return b"".join(chunks)


def follow_log(client: HttpClient, run_id: str, name: str, out: IO[bytes]) -> dict:
    """Print the log as it grows until the run ends; return the run's final JSON.

    The run's status is read before the log each round, so once a final
    status is seen, the read that follows has everything the script wrote.
    """
    offset, delay = 0, 0.25
    while True:
        dto = client.get(f"runs/{q(run_id)}/")
        got = 0
        while True:
            try:
                data, size = read_chunk(client, run_id, name, offset)
            except NotFoundException:  # the log is created when the script starts
                break
            if data:
                out.write(data)
                out.flush()
                offset += len(data)
                got += len(data)
            if not data or offset >= size:
                break
        if dto.get("status") in TERMINAL:
            return dto
        delay = 0.25 if got else min(2.0, delay * 1.5)
        time.sleep(delay)


# --- download ---------------------------------------------------------------------------------------------


def run_download(args: Any, ctx: Context) -> Any:
    client = ctx.client
    path = f"runs/{q(args.run_id)}"
    client.get(f"{path}/")  # an unknown run is "not found", not an empty download
    root = Path(args.directory or args.run_id).expanduser()
    files = client.get(f"{path}/files/", params={"prefix": args.prefix or ""})
    logs = [] if args.no_logs else client.get(f"{path}/logs/")
    if args.prefix:
        logs = [entry for entry in logs if entry["name"].startswith(args.prefix)]
    saved = []
    for entry in files:
        target = _inside(root, entry["path"])
        response = client.request(
            "GET", f"{path}/files/content/", params={"name": entry["path"]}, stream=True, timeout=UPLOAD_TIMEOUT
        )
        size = _save(target, response.iter_content(1024 * 1024))
        saved.append({"name": entry["path"], "kind": "file", "size": size, "path": str(target)})
    for entry in logs:
        target = _inside(root, entry["name"])
        size = _save(target, [read_log(client, args.run_id, entry["name"])])
        saved.append({"name": entry["name"], "kind": "log", "size": size, "path": str(target)})
    log.info("saved %d file(s) under %s", len(saved), root)
    return Result(saved, default_output="table")


def _inside(root: Path, name: str) -> Path:
    """Where `name` goes under `root`; a name that would escape it is refused, whatever the server sent."""
    target = (root / name).resolve()
    if Path(name).is_absolute() or not target.is_relative_to(root.resolve()):
        raise CliError(f"refusing to write {name!r} outside {root}: the studio sent an unsafe file name", Exit.SERVER)
    return target


def _save(target: Path, blocks: Any) -> int:
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.part")
    size = 0
    with open(partial, "wb") as fh:
        for block in blocks:
            fh.write(block)
            size += len(block)
    os.replace(partial, target)
    return size
