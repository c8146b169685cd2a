"""Exit codes and one-line error messages that a shell script can rely on.

Every failure ends as `error: <what went wrong; what to do>` on stderr and one
of the exit codes below; a traceback is shown only with --debug.
"""

from __future__ import annotations

from enum import IntEnum

from runs.sdk.exceptions import (
    ActivityFailedException,
    AuthenticationException,
    NotFoundException,
    ServiceException,
    StudioConnectionException,
    StudioException,
    UserErrorException,
)


class Exit(IntEnum):
    OK = 0
    RUN_FAILED = 1  # a command that waits for a run saw it end Failed or Canceled
    USAGE = 2  # bad arguments or options, an invalid --query, a local file that is missing or unusable
    NOT_FOUND = 3  # the studio has no such run, experiment, workspace, compute target, file or log
    AUTH = 4  # no studio/token/workspace configured, the token was refused, or not allowed
    UNREACHABLE = 5  # the studio could not be reached (refused, unknown host, timed out)
    REFUSED = 6  # the studio refused the request as invalid or conflicting (HTTP 400, 409, 413)
    SERVER = 7  # the studio failed (HTTP 5xx) or answered something unexpected
    INTERRUPTED = 130  # Ctrl-C


EXIT_CODE_HELP = """\
exit codes:
  0    success
  1    the run ended Failed or Canceled (submit-script without --async, logs --follow)
  2    usage error: bad arguments or options, invalid --query, missing local file
  3    not found: no such run, experiment, workspace, compute target, file or log
  4    authentication or configuration: nothing configured, token refused, not allowed
  5    the studio could not be reached
  6    the studio refused the request (invalid or conflicting, e.g. cancelling a finished run)
  7    the studio failed (HTTP 5xx) or answered something unexpected
  130  interrupted (Ctrl-C); a run being followed keeps running"""

LOGIN_HINT = "run `studio login --url URL --token KEY` (create a key on the studio's Tokens page)"


class CliError(Exception):
    """A failure the CLI explains itself: printed as `error: <message>`, exits with `code`."""

    def __init__(self, message: str, code: Exit) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


# What to try when the studio says something does not exist (matched on the start of its message).
_NOT_FOUND_HINTS = (
    ("run '", "check the id; `studio run list` shows the runs"),
    ("experiment '", "`studio experiment list` shows the experiments"),
    ("workspace '", "`studio login` lists the workspaces you are a member of"),
)


def translate(exc: BaseException, url_source: str | None = None, token_source: str | None = None) -> CliError | None:
    """The CliError for an SDK exception, or None if `exc` is not one we explain.

    `url_source` and `token_source` say where the URL and token came from, so an unreachable
    studio or a refused token names the place to fix.
    """
    if isinstance(exc, CliError):
        return exc
    if isinstance(exc, StudioConnectionException):
        where = f"; the URL is from {url_source}" if url_source else ""
        return CliError(f"{_sentence(exc.message)}{where}", Exit.UNREACHABLE)
    if isinstance(exc, AuthenticationException):
        where = f"the token from {token_source} was refused: " if token_source else ""
        fix = "" if "studio login" in exc.message else f"; {LOGIN_HINT}"
        return CliError(f"{where}{_sentence(exc.message)}{fix}", Exit.AUTH)
    if isinstance(exc, NotFoundException):
        hint = next((h for prefix, h in _NOT_FOUND_HINTS if exc.message.startswith(prefix)), None)
        return CliError(f"{_sentence(exc.message)}; {hint}" if hint else exc.message, Exit.NOT_FOUND)
    if isinstance(exc, ServiceException):
        if exc.status_code == 403:
            return CliError(f"{_sentence(exc.message)}; ask a workspace owner for access", Exit.AUTH)
        if exc.status_code >= 500:
            return CliError(
                f"the studio failed with HTTP {exc.status_code} on {exc.method} {exc.url}: {exc.message}; "
                "retry, and if it persists see the studio's log",
                Exit.SERVER,
            )
        return CliError(exc.message, Exit.REFUSED)
    if isinstance(exc, UserErrorException):
        return CliError(exc.message, Exit.USAGE)
    if isinstance(exc, ValueError) and type(exc).__name__ == "JSONDecodeError":
        # Something answered that is not the studio's API (a proxy page, another server on that port).
        where = f" (from {url_source})" if url_source else ""
        return CliError(
            f"the server did not answer with JSON ({exc}); check that the URL{where} is the studio's address",
            Exit.SERVER,
        )
    if isinstance(exc, ActivityFailedException | StudioException):
        return CliError(str(exc), Exit.SERVER)
    return None


def one_line(text: str) -> str:
    """Messages are one line so `2>&1 | tail -1` and log scrapers see the whole of it."""
    return " ".join(str(text).split())


def _sentence(text: str) -> str:
    return text.rstrip(" .")
