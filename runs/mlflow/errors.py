"""MLflow's error shape: {"error_code": "...", "message": "..."} with the HTTP status MLflow uses.

The MLflow client turns these bodies into `RestException`/`MlflowException` with
the same `error_code`, so scripts that catch, say, RESOURCE_DOES_NOT_EXIST keep
working. The client retries 429 and 5xx responses for minutes, so a request the
server will never accept must not get one of those statuses.
"""

from __future__ import annotations

import orjson
from django.http import HttpResponse

from runs.errors import Conflict, Forbidden, InvalidInput, NotFound, PayloadTooLarge, StudioError
from runs.lifecycle import IllegalTransition

INVALID_PARAMETER_VALUE = "INVALID_PARAMETER_VALUE"
RESOURCE_DOES_NOT_EXIST = "RESOURCE_DOES_NOT_EXIST"
RESOURCE_ALREADY_EXISTS = "RESOURCE_ALREADY_EXISTS"
RESOURCE_CONFLICT = "RESOURCE_CONFLICT"
PERMISSION_DENIED = "PERMISSION_DENIED"
UNAUTHENTICATED = "UNAUTHENTICATED"
ENDPOINT_NOT_FOUND = "ENDPOINT_NOT_FOUND"
BAD_REQUEST = "BAD_REQUEST"
INTERNAL_ERROR = "INTERNAL_ERROR"

# mlflow.exceptions.ERROR_CODE_TO_HTTP_STATUS, for the codes this server sends.
HTTP_STATUS = {
    INVALID_PARAMETER_VALUE: 400,
    RESOURCE_ALREADY_EXISTS: 400,
    BAD_REQUEST: 400,
    UNAUTHENTICATED: 401,
    PERMISSION_DENIED: 403,
    RESOURCE_DOES_NOT_EXIST: 404,
    ENDPOINT_NOT_FOUND: 404,
    RESOURCE_CONFLICT: 409,
    INTERNAL_ERROR: 500,
}

REQUEST_DOCS_HINT = " See the API docs for more information about request parameters."


class MlflowError(Exception):
    """An error to send in MLflow's format."""

    def __init__(self, message: str, error_code: str = INVALID_PARAMETER_VALUE):
        super().__init__(message)
        self.message = message
        self.error_code = error_code

    @property
    def status(self) -> int:
        return HTTP_STATUS.get(self.error_code, 500)


def missing(name: str) -> MlflowError:
    return MlflowError(f"Missing value for required parameter '{name}'.{REQUEST_DOCS_HINT}")


def invalid(name: str, value: object, hint: str = "") -> MlflowError:
    shown = orjson.dumps(value, option=orjson.OPT_SORT_KEYS, default=str).decode()
    message = f"Invalid value {shown} for parameter '{name}' supplied"
    return MlflowError(f"{message}: {hint}" if hint else f"{message}.")


def from_studio_error(exc: Exception) -> MlflowError:
    """Translate a domain error raised by a service or selector (runs.errors) into MLflow's codes."""
    if isinstance(exc, MlflowError):
        return exc
    if isinstance(exc, IllegalTransition):
        return MlflowError(str(exc), INVALID_PARAMETER_VALUE)
    if isinstance(exc, NotFound):
        return MlflowError(exc.message, RESOURCE_DOES_NOT_EXIST)
    if isinstance(exc, Forbidden):
        return MlflowError(exc.message, PERMISSION_DENIED)
    if isinstance(exc, Conflict):
        return MlflowError(exc.message, RESOURCE_CONFLICT)
    # Too large is final, so it must not be a 429 the client would retry.
    if isinstance(exc, InvalidInput | PayloadTooLarge | StudioError):
        return MlflowError(exc.message, INVALID_PARAMETER_VALUE)
    raise TypeError(f"not a domain error: {exc!r}")


def error_response(error: MlflowError, *, headers: dict[str, str] | None = None) -> HttpResponse:
    body = orjson.dumps({"error_code": error.error_code, "message": error.message})
    response = HttpResponse(body, status=error.status, content_type="application/json")
    for name, value in (headers or {}).items():
        response[name] = value
    return response
