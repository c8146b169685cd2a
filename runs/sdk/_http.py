"""HTTP to the studio's REST API: one requests.Session per client, token auth, errors as SDK exceptions.

Every API error becomes a ServiceException whose message is exactly the
server's `detail` ({"detail", "code", ...}); 404 is NotFoundException, 401
AuthenticationException. A studio that cannot be reached is a
StudioConnectionException naming the URL.

Calls that are safe to repeat (GET, PATCH, and POSTs the caller marks
`retry=True`, such as complete/cancel/tags, which the server treats as
idempotent) are retried on connection errors, timeouts, 429 and 502-504 for
up to STUDIO_HTTP_RETRY_SECONDS (default 10 s) with a growing delay. Creating
calls (start_logging, create_children, submit) are not retried, so a lost
answer never creates two runs.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import requests

from runs.sdk import _json
from runs.sdk._env import env_float
from runs.sdk.credentials import normalize_url
from runs.sdk.exceptions import (
    AuthenticationException,
    NotFoundException,
    ServiceException,
    StudioConnectionException,
)

DEFAULT_TIMEOUT = (10.0, 120.0)  # (connect, read) seconds
UPLOAD_TIMEOUT = (10.0, 900.0)
_TRANSIENT_STATUS = frozenset({429, 502, 503, 504})
_IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "PATCH", "DELETE", "OPTIONS"})
_ERRNO_RE = re.compile(r"\[Errno -?\d+\] ([^'\")\]]+)")


def q(value: str) -> str:
    """Quote one path segment (run ids, names) for a URL."""
    return quote(str(value), safe="")


def connection_reason(exc: BaseException) -> str:
    """A short human reason for a requests failure ("Connection refused", "timed out")."""
    if isinstance(exc, requests.Timeout):
        return "the request timed out"
    match = _ERRNO_RE.search(str(exc))
    if match:
        return match.group(1).strip()
    text = str(exc)
    return text if len(text) < 160 else type(exc).__name__


class HttpClient:
    """Authenticated access to one studio (`base_url`) with one token.

    Not shared across threads: the SDK's background sender uses `clone()`,
    which has its own session, so a training loop's calls and the sender's
    never share a connection pool.
    """

    def __init__(self, url: str, token: str, *, timeout: tuple[float, float] = DEFAULT_TIMEOUT) -> None:
        self.base_url = normalize_url(url)
        self.token = token
        self.timeout = timeout
        self.session = self._new_session()

    def _new_session(self) -> requests.Session:
        from runs.sdk import VERSION

        session = requests.Session()
        session.headers.update(
            {
                "Authorization": f"Token {self.token}",
                "Accept": "application/json",
                "User-Agent": f"run-studio-sdk/{VERSION}",
            }
        )
        return session

    def clone(self) -> HttpClient:
        """A client for the same studio and token with a session of its own."""
        return HttpClient(self.base_url, self.token, timeout=self.timeout)

    @property
    def key(self) -> tuple[str, str]:
        return (self.base_url, self.token)

    def api_url(self, path: str) -> str:
        return f"{self.base_url}/api/{path.lstrip('/')}"

    def web_url(self, path: str) -> str:
        return f"{self.base_url}/{path.lstrip('/')}"

    # --- requests ----------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        data: Any = None,
        files: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: tuple[float, float] | float | None = None,
        retry: bool | None = None,
        stream: bool = False,
        ok_statuses: tuple[int, ...] = (),
    ) -> requests.Response:
        """Send one API call; return the response (2xx or one of `ok_statuses`).

        Raises ServiceException (and subclasses) for error answers,
        StudioConnectionException when the studio cannot be reached.
        """
        method = method.upper()
        url = self.api_url(path)
        if json is not None:
            data = _json.dumps(json)
            headers = {**(headers or {}), "Content-Type": "application/json"}
        retry = method in _IDEMPOTENT_METHODS if retry is None else retry
        deadline = time.monotonic() + (env_float("STUDIO_HTTP_RETRY_SECONDS", 10.0, minimum=0) if retry else 0)
        delay = 0.25
        while True:
            _rewind(files)
            if hasattr(data, "seek"):
                data.seek(0)
            try:
                response = self.session.request(
                    method,
                    url,
                    params=params,
                    data=data,
                    files=files,
                    headers=headers,
                    timeout=timeout or self.timeout,
                    stream=stream,
                )
            except requests.RequestException as exc:
                if time.monotonic() + delay <= deadline:
                    time.sleep(delay)
                    delay = min(delay * 2, 4.0)
                    continue
                raise StudioConnectionException(
                    f"could not reach the studio at {self.base_url} ({method} {url}): {connection_reason(exc)}. "
                    "Check that the studio is running and that the URL (config.json 'url' or STUDIO_URL) is right.",
                    url=url,
                ) from None
            if response.status_code in _TRANSIENT_STATUS and time.monotonic() + delay <= deadline:
                response.close()
                time.sleep(delay)
                delay = min(delay * 2, 4.0)
                continue
            if response.status_code < 400 or response.status_code in ok_statuses:
                return response
            raise error_from_response(response, method, url)

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.request("GET", path, **kwargs).json()

    def post(self, path: str, body: Any = None, **kwargs: Any) -> Any:
        response = self.request("POST", path, json=body if body is not None else {}, **kwargs)
        return response.json() if response.content else None

    def patch(self, path: str, body: Any, **kwargs: Any) -> Any:
        return self.request("PATCH", path, json=body, **kwargs).json()


def error_from_response(response: requests.Response, method: str, url: str) -> ServiceException:
    """The SDK exception for an error answer; its message is the server's `detail`."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        body = {}
    detail = body.get("detail")
    if not isinstance(detail, str) or not detail:
        text = response.text.strip().replace("\n", " ")[:300]
        detail = f"{method} {url} failed with HTTP {response.status_code}" + (f": {text}" if text else "")
    cls = ServiceException
    if response.status_code == 404:
        cls = NotFoundException
    elif response.status_code == 401:
        cls = AuthenticationException
    return cls(
        detail,
        status_code=response.status_code,
        code=str(body.get("code") or "error"),
        body=body,
        method=method,
        url=url,
    )


def _rewind(files: Mapping[str, Any] | None) -> None:
    # A retried upload must send the file from its first byte again.
    for value in (files or {}).values():
        stream = value[1] if isinstance(value, tuple) else value
        if hasattr(stream, "seek"):
            stream.seek(0)
