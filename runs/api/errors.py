"""One error shape for every API failure: {"detail": message, "code": code, "errors": {...}}.

Domain errors (runs.errors) and illegal transitions map to their HTTP status
here, so views never translate errors themselves. A database that cannot be
reached (restarting, failing over, SQLite locked past its timeout) is 503: the
client retries, which the API makes safe (metric batch ids, log offsets).
"""

from __future__ import annotations

import logging

from django.db import InterfaceError, OperationalError
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from runs.errors import StudioError
from runs.lifecycle import IllegalTransition

log = logging.getLogger(__name__)


def exception_handler(exc, context):
    if isinstance(exc, IllegalTransition):
        return Response(
            {"detail": str(exc), "code": "illegal_transition", "current": exc.current, "requested": exc.target},
            status=status.HTTP_409_CONFLICT,
        )
    if isinstance(exc, StudioError):
        body = {"detail": exc.message, "code": exc.code}
        if exc.field:
            body["errors"] = {exc.field: [exc.message]}
        return Response(body, status=exc.status_code)
    if isinstance(exc, OperationalError | InterfaceError):
        log.error("database unavailable during %s: %s", _where(context), exc)
        response = Response(
            {
                "detail": "the studio's database is unavailable right now; retry the request in a few seconds",
                "code": "database_unavailable",
            },
            status=status.HTTP_503_SERVICE_UNAVAILABLE,
        )
        response["Retry-After"] = "2"
        return response
    if isinstance(exc, Http404):
        exc = exceptions.NotFound(str(exc) or "not found")
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        errors = response.data if isinstance(response.data, dict) else {"non_field_errors": response.data}
        first = _first_message(errors)
        response.data = {"detail": first, "code": "invalid", "errors": errors}
    elif isinstance(response.data, dict) and "detail" in response.data:
        detail = response.data["detail"]
        response.data = {"detail": str(detail), "code": getattr(detail, "code", "error")}
    return response


def _where(context) -> str:
    request = context.get("request")
    return f"{request.method} {request.path}" if request is not None else "a request"


def _first_message(errors) -> str:
    if isinstance(errors, dict):
        for field, value in errors.items():
            message = _first_message(value)
            return message if field in ("non_field_errors", "detail") else f"{field}: {message}"
    if isinstance(errors, list) and errors:
        return _first_message(errors[0])
    return str(errors)
