"""Studio pages (htmx). Thin: selectors to read, services to write."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import render

from runs import selectors
from runs.access import Principal
from runs.errors import NotFound


@login_required
def home(request):
    principal = Principal.of(request)
    experiments = (
        selectors.experiments_visible(principal).select_related("workspace").order_by("workspace__name", "name")
    )
    return render(request, "runs/home.html", {"experiments": experiments})


@login_required
def run_page(request, run_id: str):
    try:
        run = selectors.run_get(Principal.of(request), run_id)
    except NotFound as exc:
        raise Http404(exc.message) from None
    return render(request, "runs/run.html", {"run": run})
