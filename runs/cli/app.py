"""The `studio` command: argument parsing, global options, output, errors and exit codes."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import textwrap
import traceback
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from runs.cli.context import ONE_SHOT_RETRY_SECONDS, Context, retry_seconds
from runs.cli.errors import EXIT_CODE_HELP, CliError, Exit, one_line, translate
from runs.cli.output import FORMATS, Result, apply_query, compile_query, render, write_err

DESCRIPTION = """\
Run Studio from a terminal: the `az ml` v1 run commands against your studio.

Set up once with `studio login --url URL --token KEY` (or a config.json from
`make run`), then attach a project folder with `studio folder attach -w
WORKSPACE -e EXPERIMENT` and submit with `studio run submit-script train.py`."""

EPILOG = f"""\
global options (every command): -o/--output FORMAT, --query JMESPATH, --verbose, --debug
  -o json|jsonc|table|tsv|yaml   lists (run list, experiment list, compute list,
                                 run download) default to table, everything else to json
  --query JMESPATH               applied to the JSON result before it is formatted, e.g.
                                 studio run list --query "[?tags.quality=='fantastic run']"
                                 (with --query and no --last, `run list` queries all runs)

where settings come from (first found wins):
  studio URL   env STUDIO_URL, config.json 'url', the default of `studio login`
  token        env STUDIO_TOKEN, config.json 'token', the token `studio login` saved
  workspace    -w, config.json 'workspace_name', env STUDIO_WORKSPACE, your only workspace
  experiment   -e, config.json 'experiment_name', env STUDIO_EXPERIMENT
  config.json  --path if it is a file, else ./config.json, ./.studio/config.json,
               ./.azureml/config.json, then the same in each parent folder

{EXIT_CODE_HELP}"""


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors (exit code 2) instead of a usage block."""

    def error(self, message: str) -> NoReturn:
        raise CliError(f"{message} (see `{self.prog} --help`)", Exit.USAGE)


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=34, width=100)


def _global_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("global options")
    group.add_argument(
        "-o",
        "--output",
        choices=FORMATS,
        metavar="FORMAT",
        default=argparse.SUPPRESS,
        help=f"{'|'.join(FORMATS)} (default: table for lists, json otherwise)",
    )
    group.add_argument(
        "--query",
        metavar="JMESPATH",
        default=argparse.SUPPRESS,
        help="JMESPath query applied to the JSON result, e.g. \"[?status=='Failed'].runId\"",
    )
    group.add_argument(
        "--verbose",
        action="store_true",
        default=argparse.SUPPRESS,
        help="say what is done and where settings come from",
    )
    group.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS,
        help="log every HTTP request and show the traceback of an error (never the token)",
    )


class Commands:
    """Builds subcommands with the global options and the shared workspace options."""

    def __init__(self, root: argparse.ArgumentParser) -> None:
        self.root = root
        self.root_sub = root.add_subparsers(title="commands", metavar="COMMAND")

    def group(self, name: str, help_text: str, description: str | None = None) -> argparse._SubParsersAction:
        parser = self.root_sub.add_parser(
            name, help=help_text, description=_wrap(description or help_text), formatter_class=HelpFormatter
        )
        _global_options(parser)
        parser.set_defaults(group_parser=parser)
        sub = parser.add_subparsers(title="commands", metavar="COMMAND")
        return sub

    def command(
        self,
        sub: argparse._SubParsersAction,
        name: str,
        handler: Callable[..., Any],
        help_text: str,
        *,
        description: str | None = None,
        epilog: str | None = None,
        workspace: bool = True,
        experiment: bool = False,
        aliases: Sequence[str] = (),
    ) -> argparse.ArgumentParser:
        parser = sub.add_parser(
            name,
            help=help_text,
            description=_wrap(description or help_text),
            epilog=epilog,
            aliases=list(aliases),
            formatter_class=HelpFormatter,
        )
        parser.set_defaults(handler=handler)
        if workspace:
            self.workspace_options(parser, experiment=experiment)
        _global_options(parser)
        return parser

    @staticmethod
    def workspace_options(parser: argparse.ArgumentParser, *, experiment: bool) -> None:
        group = parser.add_argument_group("workspace options")
        group.add_argument(
            "-w", "--workspace-name", metavar="NAME", help="workspace (default: from config.json, else your only one)"
        )
        if experiment:
            group.add_argument(
                "-e", "--experiment-name", metavar="NAME", help="experiment (default: from .studio/config.json)"
            )
        group.add_argument(
            "--path",
            metavar="DIR",
            help="project folder where config.json is looked for (default: the current folder), or a config.json",
        )


def _wrap(text: str) -> str:
    # Descriptions are written as paragraphs; epilogs keep their own layout (examples).
    return "\n\n".join(textwrap.fill(" ".join(p.split()), 100) for p in text.split("\n\n"))


def build_parser() -> Parser:
    from runs.cli.commands import auth, folder, run, workspace
    from runs.sdk import VERSION

    parser = Parser(prog="studio", description=DESCRIPTION, epilog=EPILOG, formatter_class=HelpFormatter)
    parser.add_argument("--version", action="version", version=f"studio {VERSION}")
    _global_options(parser)
    commands = Commands(parser)
    auth.register(commands)
    folder.register(commands)
    run.register(commands)
    workspace.register(commands)
    return parser


def setup_logging(verbose: bool, debug: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    logging.getLogger("runs").setLevel(logging.DEBUG if debug else logging.INFO if verbose else logging.WARNING)


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return f"{record.levelname.lower()}: {record.getMessage()}"


def main(argv: Sequence[str] | None = None) -> int:
    """Run one `studio` command; returns the exit code (see EXIT_CODE_HELP)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    # Known before parsing, so that even an argument error can show its traceback.
    debug = "--debug" in argv
    context: Context | None = None
    retry_seconds(ONE_SHOT_RETRY_SECONDS)
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        debug = bool(getattr(args, "debug", False))
        setup_logging(bool(getattr(args, "verbose", False)), debug)
        handler = getattr(args, "handler", None)
        if handler is None:  # `studio` or `studio run` alone: show what can follow
            (getattr(args, "group_parser", None) or parser).print_help()
            return Exit.OK
        expression = getattr(args, "query", None)
        compiled = compile_query(expression) if expression else None
        context = Context(args)
        result = handler(args, context)
        if not isinstance(result, Result):
            return int(result or Exit.OK)
        if result.data is not None or compiled is not None:
            data = apply_query(compiled, result.data) if compiled is not None else result.data
            fmt = getattr(args, "output", None) or result.default_output
            render(data, fmt, sys.stdout, table=result.table)
            sys.stdout.flush()
        return int(result.code)
    except KeyboardInterrupt:
        write_err("error: interrupted")
        return Exit.INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`studio run list | head`): stop quietly, and keep
        # Python from complaining when it flushes stdout at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return Exit.OK
    except Exception as exc:
        error = translate(exc, getattr(context, "url_source", None), getattr(context, "token_source", None))
        if debug:
            traceback.print_exc()
        if error is None:
            error = CliError(
                f"unexpected {type(exc).__name__}: {exc} (run again with --debug for the traceback)", Exit.SERVER
            )
        write_err(f"error: {one_line(error.message)}")
        return int(error.code)
