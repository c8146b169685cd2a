from __future__ import annotations

import orjson
from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import BaseParser

from runs import limits
from runs.errors import PayloadTooLarge


def read_capped(stream) -> bytes:
    """The whole body, refused past STUDIO_MAX_REQUEST_BYTES without reading more than one byte beyond it.

    DRF hands parsers the raw request stream, so Django's own size check
    (DATA_UPLOAD_MAX_MEMORY_SIZE, which only guards request.body and form
    fields) never runs for JSON and raw bodies.
    """
    if stream is None:
        return b""
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    data = stream.read(limit + 1)
    if len(data) > limit:
        raise PayloadTooLarge(too_large_message(limit))
    return data


def too_large_message(limit: int) -> str:
    return (
        f"the request body is larger than {limit} bytes, the limit (STUDIO_MAX_REQUEST_BYTES); "
        "send smaller batches (files and snapshots have their own upload endpoints)"
    )


class OrjsonParser(BaseParser):
    """JSON bodies parsed with orjson (several times faster on metric batches)."""

    media_type = "application/json"

    def parse(self, stream, media_type=None, parser_context=None):
        raw = read_capped(stream)
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise ParseError(f"malformed JSON: {exc}; send a valid JSON body") from None
        # JSON can only carry a NUL as the escape \u0000; PostgreSQL stores it in no text or JSON
        # column and refuses it even as a lookup value, so one check here covers every endpoint
        # (except a view that cleans NULs itself, as the runner's exit report of a script's output).
        view = (parser_context or {}).get("view")
        if b"\\u0000" in raw and not getattr(view, "cleans_nul_itself", False):
            limits.check_no_nul(data, "the JSON body")
        return data


class RawBytesParser(BaseParser):
    """Log appends and file uploads send the bytes as they are."""

    media_type = "application/octet-stream"

    def parse(self, stream, media_type=None, parser_context=None):
        return read_capped(stream)
