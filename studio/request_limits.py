"""Requests refused before any view can make sense of them, answered in the caller's own terms.

Django refuses a body past DATA_UPLOAD_MAX_MEMORY_SIZE (STUDIO_MAX_REQUEST_BYTES)
and a request with more than DATA_UPLOAD_MAX_NUMBER_FIELDS parameters by raising a
SuspiciousOperation, which it answers with a bare "Bad Request (400)" page through
handler400, wherever it is raised: in a page, in a DRF view, in the CSRF check.
`bad_request` says which limit was hit, with 413 for a body too large, as JSON in
the REST API's and the MLflow API's shapes and as text for pages.

NUL characters have no use in a URL and PostgreSQL refuses them in any text it
is asked to compare (a 500 for `?q=%00`), so RefuseNulMiddleware turns them away
at the door.
"""

from __future__ import annotations

import re

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.defaults import bad_request as django_bad_request

# runs/mlflow/urls.py: at the root or under w/<workspace>/.
_MLFLOW_PATH = re.compile(r"^(/w/[^/]+)?/(api/2\.0/mlflow|ajax-api/2\.0/mlflow|api/3\.0/mlflow)")


def _limit_message(exception: Exception) -> str | None:
    if isinstance(exception, RequestDataTooBig):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        return (
            f"the request body is larger than {limit} bytes, the limit (STUDIO_MAX_REQUEST_BYTES); "
            "send smaller batches (files and snapshots have their own upload endpoints)"
        )
    if isinstance(exception, TooManyFieldsSent):
        return (
            f"the request has more than {settings.DATA_UPLOAD_MAX_NUMBER_FIELDS} parameters, the limit; "
            "send fewer query parameters or form fields"
        )
    if isinstance(exception, TooManyFilesSent):
        return f"the request has more than {settings.DATA_UPLOAD_MAX_NUMBER_FILES} files, the limit; upload a zip"
    return None


def _is_mlflow(path: str) -> bool:
    return _MLFLOW_PATH.match(path) is not None


def _answer(request: HttpRequest, message: str, status: int) -> HttpResponse:
    path = request.path
    if _is_mlflow(path):
        # The MLflow client retries 429 and 5xx; this answer is final, and names the problem.
        return JsonResponse({"error_code": "INVALID_PARAMETER_VALUE", "message": message}, status=status)
    if path.startswith("/api/"):
        code = "too_large" if status == 413 else "invalid"
        return JsonResponse({"detail": message, "code": code}, status=status)
    return HttpResponse(message, status=status, content_type="text/plain; charset=utf-8")


def bad_request(request: HttpRequest, exception: Exception, template_name: str = "400.html") -> HttpResponse:
    """handler400: a limit Django enforced is named; any other bad request keeps Django's answer."""
    message = _limit_message(exception)
    if message is None:
        return django_bad_request(request, exception, template_name)
    return _answer(request, message, 413 if isinstance(exception, RequestDataTooBig) else 400)


class RefuseNulMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if "\x00" in request.path or "%00" in request.META.get("QUERY_STRING", ""):
            return _answer(request, "the address contains a NUL character (%00); remove it", 400)
        return self.get_response(request)
