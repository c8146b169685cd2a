"""`studio login` / `studio logout`: the user's saved token (runs.sdk.credentials, mode 0600)."""

from __future__ import annotations

import getpass
import logging
import os
import sys
from typing import TYPE_CHECKING, Any

from runs.cli.errors import CliError, Exit
from runs.cli.output import Result
from runs.sdk import credentials
from runs.sdk._http import HttpClient
from runs.sdk.exceptions import AuthenticationException, UserErrorException

if TYPE_CHECKING:
    from runs.cli.app import Commands
    from runs.cli.context import Context

log = logging.getLogger("runs.cli")


def register(commands: Commands) -> None:
    login_parser = commands.command(
        commands.root_sub,
        "login",
        login,
        "save an API token for a studio (checked against the studio first)",
        description=(
            "Check the token against the studio (GET /api/me/), then save it in "
            "${STUDIO_CONFIG_HOME:-~/.config/run-studio}/credentials.json, readable only by you (mode 0600). "
            "The studio becomes the default one. Without --token the token is read from the terminal "
            "(hidden) or from the first line of stdin, which keeps it out of your shell history."
        ),
        epilog="example:\n  studio login --url http://127.0.0.1:8000 --token rs_...\n"
        '  echo "$KEY" | studio login --url https://studio.example.com',
        workspace=False,
    )
    login_parser.add_argument(
        "--url", help="the studio's address, e.g. http://127.0.0.1:8000 (default: env STUDIO_URL or config.json)"
    )
    login_parser.add_argument("--token", help="an API token from the studio's Tokens page (default: read from stdin)")
    login_parser.add_argument("--path", metavar="DIR", help="where to look for a config.json giving the URL")

    logout_parser = commands.command(
        commands.root_sub,
        "logout",
        logout,
        "forget the token saved for a studio",
        workspace=False,
    )
    logout_parser.add_argument("--url", help="the studio to forget (default: as for other commands)")
    logout_parser.add_argument("--path", metavar="DIR", help="where to look for a config.json giving the URL")


def login(args: Any, ctx: Context) -> Any:
    url = args.url or os.environ.get("STUDIO_URL") or ctx.config.get("url")
    if not url:
        raise CliError("no studio URL: pass --url, e.g. --url http://127.0.0.1:8000", Exit.USAGE)
    url = credentials.normalize_url(str(url))
    if not url.startswith(("http://", "https://")):
        raise CliError(f"--url must start with http:// or https://, not {url!r}", Exit.USAGE)
    token = (args.token or _read_token()).strip()
    if not token:
        raise CliError("no token given: pass --token KEY or type it when asked", Exit.USAGE)
    client = HttpClient(url, token)
    try:
        me = client.get("me/")
    except AuthenticationException as exc:
        raise CliError(
            f"{url} refused the token ({exc.message.rstrip('.')}); copy a current one from the studio's Tokens page",
            Exit.AUTH,
        ) from None
    if me.get("run_id"):
        raise CliError(
            f"that is the token of run {me['run_id']}, valid only while the run is active; "
            "log in with a personal API token from the Tokens page",
            Exit.AUTH,
        )
    try:
        path = credentials.save(url, token)
    except (UserErrorException, OSError) as exc:
        raise CliError(f"cannot save the token: {exc}", Exit.AUTH) from None
    log.info("token saved in %s", path)
    return Result(
        {
            "url": url,
            "user": me.get("username"),
            "workspaces": list(me.get("workspaces") or []),
            "credentialsFile": str(path),
        }
    )


def logout(args: Any, ctx: Context) -> Any:
    url = credentials.normalize_url(args.url) if args.url else ctx.url
    try:
        removed = credentials.remove(url)
    except UserErrorException as exc:
        raise CliError(exc.message, Exit.AUTH) from None
    return Result({"url": url, "loggedOut": removed})


def _read_token() -> str:
    if sys.stdin is None:
        return ""
    if sys.stdin.isatty():
        return getpass.getpass("API token: ")
    return sys.stdin.readline()
