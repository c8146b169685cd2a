"""JSON with orjson when it is installed (several times faster on metric batches), else the stdlib."""

from __future__ import annotations

import json
from typing import Any

try:  # orjson is optional: the SDK must work with only requests and pathspec.
    import orjson as _orjson
except ImportError:  # pragma: no cover - exercised where orjson is absent
    _orjson = None

HAVE_ORJSON = _orjson is not None


def dumps(obj: Any) -> bytes:
    """Encode to UTF-8 JSON bytes. Non-finite floats must already be wire-encoded ({"$float": ...})."""
    if _orjson is not None:
        return _orjson.dumps(obj)
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")


def loads(data: bytes | str) -> Any:
    if _orjson is not None:
        return _orjson.loads(data)
    return json.loads(data)
