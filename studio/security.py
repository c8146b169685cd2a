"""Content-Security-Policy for the studio's pages.

Scripts come only from this origin (static/: htmx, plotly, studio.js; the API
docs' Swagger UI from drf-spectacular-sidecar): no inline scripts, no eval, so
text a run logged can never run as script even if some template forgot to
escape it. Styles may be inline (plotly and htmx set style attributes).
Responses that set their own policy keep it (file downloads are sandboxed).
"""

from __future__ import annotations

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data: blob:",
        "font-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)


class ContentSecurityPolicyMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if "Content-Security-Policy" not in response and response.get("Content-Type", "").startswith("text/html"):
            response["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
        return response
