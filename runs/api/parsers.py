from __future__ import annotations

import orjson
from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import BaseParser

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
        try:
            return orjson.loads(read_capped(stream))
        except orjson.JSONDecodeError as exc:
            raise ParseError(f"malformed JSON: {exc}; send a valid JSON body") from None


class RawBytesParser(BaseParser):
    """Log appends and file uploads send the bytes as they are."""

    media_type = "application/octet-stream"

    def parse(self, stream, media_type=None, parser_context=None):
        return read_capped(stream)
