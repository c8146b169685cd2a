"""Domain errors raised by services and selectors; the API and pages map them to HTTP."""

from __future__ import annotations


class StudioError(Exception):
    status_code = 400
    code = "invalid"

    def __init__(self, message: str, *, code: str | None = None, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field
        if code:
            self.code = code


class InvalidInput(StudioError):
    status_code = 400
    code = "invalid"


class NotFound(StudioError):
    status_code = 404
    code = "not_found"


class Forbidden(StudioError):
    status_code = 403
    code = "forbidden"


class Conflict(StudioError):
    status_code = 409
    code = "conflict"


class PayloadTooLarge(StudioError):
    status_code = 413
    code = "too_large"


class Unavailable(StudioError):
    """The studio cannot do it right now (its storage or database is away); nothing was stored.

    Clients retry the same request later: the rules that make retries safe (log offsets,
    metric batch ids) hold across it."""

    status_code = 503
    code = "unavailable"
