"""Exceptions raised by the SDK, named as in the Azure ML SDK v1 (`azureml.exceptions`).

Porting a script that catches `UserErrorException` or `ActivityFailedException`
is a change of import lines. Every exception carries a message that names the
problem and, where there is one, the fix.

Hierarchy::

    StudioException (alias AzureMLException)
    ├── UserErrorException            bad arguments, missing config, limits
    │   ├── ExperimentExecutionException   submit() refused before anything was sent
    │   └── SnapshotException              the source folder cannot be snapshotted
    ├── ServiceException              the studio answered with an error (status, code, detail)
    │   ├── NotFoundException              404: no such workspace/experiment/run/file
    │   └── AuthenticationException        401: missing, invalid or expired token
    ├── StudioConnectionException     the studio could not be reached (names the URL)
    ├── RunEnvironmentException       Run.get_context(allow_offline=False) outside a run
    └── ActivityFailedException       wait_for_completion() on a run that Failed
"""

from __future__ import annotations

import json
from typing import Any


class StudioException(Exception):
    """Base of every SDK exception; `message` is the text shown to the user."""

    def __init__(self, message: str = "", **kwargs: Any) -> None:
        super().__init__(message)
        self.message = message
        for key, value in kwargs.items():
            setattr(self, key, value)

    def __str__(self) -> str:
        return self.message


AzureMLException = StudioException  # the v1 name of the base class


class UserErrorException(StudioException):
    """The caller asked for something that cannot work (bad argument, missing config, limit)."""


class ExperimentExecutionException(UserErrorException):
    """A submission was refused before anything was uploaded (v1 raises this from submit)."""


class SnapshotException(UserErrorException):
    """The source folder cannot be snapshotted (outside symlink, too large, too many files)."""


class RunEnvironmentException(StudioException):
    """Run.get_context(allow_offline=False) was called outside a submitted run."""


class ServiceException(StudioException):
    """The studio answered with an error.

    `str(exc)` is exactly the server's `detail` message; `status_code`, `code`
    (the server's machine-readable code, e.g. "property_immutable"), `body`
    (the whole JSON error), `method` and `url` say which call failed.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        code: str = "error",
        body: dict | None = None,
        method: str = "",
        url: str = "",
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.code = code
        self.body = body or {}
        self.method = method
        self.url = url

    @property
    def detail(self) -> str:
        return self.message


class NotFoundException(ServiceException):
    """404: the workspace, experiment, run, file or log does not exist or is not visible to you."""


class AuthenticationException(ServiceException):
    """401: the token is missing, invalid, revoked, or (for a run token) its run has ended."""


class StudioConnectionException(StudioException):
    """The studio could not be reached; `url` is the address that was tried."""

    def __init__(self, message: str, *, url: str = "") -> None:
        super().__init__(message)
        self.url = url


class ActivityFailedException(StudioException):
    """A run ended Failed while waiting for it (wait_for_completion(raise_on_error=True)).

    `error_details` is the run's error as a JSON string, as in v1;
    `error` is the same as a dict.
    """

    def __init__(self, error_details: Any = None, message: str | None = None) -> None:
        if isinstance(error_details, str):
            text = error_details
            try:
                parsed = json.loads(error_details)
            except ValueError:
                parsed = {"message": error_details}
        else:
            parsed = error_details or {}
            text = json.dumps(parsed, indent=4, sort_keys=True, default=str)
        super().__init__(message or f"Activity Failed:\n{text}")
        self.error_details = text
        self.error = parsed if isinstance(parsed, dict) else {"message": str(parsed)}


__all__ = [
    "ActivityFailedException",
    "AuthenticationException",
    "AzureMLException",
    "ExperimentExecutionException",
    "NotFoundException",
    "RunEnvironmentException",
    "ServiceException",
    "SnapshotException",
    "StudioConnectionException",
    "StudioException",
    "UserErrorException",
]
