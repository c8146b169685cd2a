"""Values every page template may use: the version, the user's workspaces for the switcher, plotly.js's path."""

from __future__ import annotations

from django.conf import settings

from runs.access import Principal
from runs.sdk import VERSION


def studio(request):
    def workspaces():
        # Called only by templates that show the switcher, so partials and polls pay nothing.
        user = getattr(request, "user", None)
        if user is None or not user.is_authenticated:
            return []
        from runs.selectors import workspaces_visible

        return list(workspaces_visible(Principal.of(request)).values_list("name", flat=True))

    match = getattr(request, "resolver_match", None)
    current = match.kwargs.get("workspace", "") if match else ""
    if not current and hasattr(request, "session"):
        current = request.session.get("workspace", "")
    return {
        "STUDIO_VERSION": VERSION,
        "studio_workspaces": workspaces,
        "current_workspace": current,
        "PLOTLY_JS": settings.PLOTLY_JS,
    }
