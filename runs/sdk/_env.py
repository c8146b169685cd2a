"""Typed reads of the SDK's environment variables; a bad value fails loudly, naming the variable."""

from __future__ import annotations

import os

from runs.sdk.exceptions import UserErrorException


def env_str(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return value if value not in (None, "") else default


def env_float(name: str, default: float, *, minimum: float | None = None) -> float:
    raw = os.environ.get(name)
    if raw in (None, ""):
        return default
    try:
        value = float(raw)
    except ValueError:
        raise UserErrorException(f"environment variable {name}={raw!r} is not a number") from None
    if minimum is not None and value < minimum:
        raise UserErrorException(f"environment variable {name}={raw!r} must be at least {minimum:g}")
    return value


def env_int(name: str, default: int, *, minimum: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except ValueError:
        raise UserErrorException(f"environment variable {name}={raw!r} is not an integer") from None
    if minimum is not None and value < minimum:
        raise UserErrorException(f"environment variable {name}={raw!r} must be at least {minimum}")
    return value
