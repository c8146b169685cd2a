"""Documented input limits and the checks that enforce them (README "Limits").

One place for every size rule, so the API, the pages and the SDK's error
messages agree.
"""

from __future__ import annotations

from runs.errors import InvalidInput

KEY_MAX = 255  # tag, property and metric names
VALUE_MAX = 4096  # tag and property values, text metric values
DESCRIPTION_MAX = 5000
DISPLAY_NAME_MAX = 255
TAGS_PER_RUN_MAX = 1000
PROPERTIES_PER_RUN_MAX = 1000
CHILDREN_PER_REQUEST_MAX = 10_000
POINTS_PER_BATCH_MAX = 100_000
SERIES_PER_BATCH_MAX = 1000
ENTRY_JSON_MAX = 1024 * 1024  # one list/row/table metric value, encoded
LOG_APPEND_MAX = 8 * 1024 * 1024
FILE_PATH_MAX = 1024
RUN_ID_MAX = 255
# Integers are stored as float64: beyond 2**53 they would silently change.
INT_METRIC_MAX = 2**53


def _has_control_chars(text: str) -> bool:
    return any(ord(ch) < 32 or ch == "\x7f" for ch in text)


def is_int(value: object) -> bool:
    """A JSON integer: Python's bool is an int, but `true` is no count, offset or process id."""
    return isinstance(value, int) and not isinstance(value, bool)


def null_as(value: object, default: object) -> object:
    """A JSON null means "none given", so only None takes the default; `[]`, `""` or `0` where an
    object or list belongs are still refused by the field's own check."""
    return default if value is None else value


def check_key(key: object, what: str) -> str:
    if not isinstance(key, str):
        raise InvalidInput(f"{what} must be a string, not {type(key).__name__}", field=what)
    if not key.strip():
        raise InvalidInput(f"{what} must not be empty", field=what)
    if len(key) > KEY_MAX:
        raise InvalidInput(f"{what} '{key[:40]}…' is {len(key)} characters; the limit is {KEY_MAX}", field=what)
    if _has_control_chars(key) or "\x00" in key:
        raise InvalidInput(f"{what} {key[:40]!r} contains control characters", field=what)
    return key


def check_value(value: object, what: str, *, allow_none: bool = True) -> str | None:
    if value is None:
        if allow_none:
            return None
        raise InvalidInput(f"{what} must not be null", field=what)
    if isinstance(value, (bool, int, float)):
        value = str(value)  # the v1 SDK stringifies non-string tag values too
    if not isinstance(value, str):
        raise InvalidInput(f"{what} must be a string or null, not {type(value).__name__}", field=what)
    if len(value) > VALUE_MAX:
        raise InvalidInput(f"{what} is {len(value)} characters; the limit is {VALUE_MAX}", field=what)
    if "\x00" in value:
        raise InvalidInput(f"{what} contains a NUL character", field=what)
    return value


def check_text(value: object, what: str, limit: int) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidInput(f"{what} must be a string, not {type(value).__name__}", field=what)
    if len(value) > limit:
        raise InvalidInput(f"{what} is {len(value)} characters; the limit is {limit}", field=what)
    if "\x00" in value:
        raise InvalidInput(f"{what} contains a NUL character", field=what)
    return value


def check_mapping(data: object, what: str, max_items: int) -> dict:
    if not isinstance(data, dict):
        raise InvalidInput(f"{what} must be a JSON object of key → value", field=what)
    if len(data) > max_items:
        raise InvalidInput(f"{what} has {len(data)} entries; the limit is {max_items} per request", field=what)
    return data


def check_no_nul(value: object, what: str) -> None:
    """Refuse a NUL character anywhere in a JSON value: PostgreSQL stores neither it in text nor \\u0000 in JSON."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                raise InvalidInput(f"{what} contains a NUL character", field=what)
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
