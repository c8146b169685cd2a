"""Studio pages (htmx). Thin: parse, call selectors to read and services to write, render.

Each page view returns the whole page on a normal request and only the part
that changed on an htmx request. Live fragments ("what changed since T")
answer 204 when nothing did, so open pages cost one or two indexed queries
per poll. Every failure of visibility is a 404, never a 403, so other teams'
names cannot be probed.
"""

from __future__ import annotations

import functools
import json
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
from django.http import (
    FileResponse,
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseBadRequest,
    HttpResponseRedirect,
)
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import content_disposition_header
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from runs import selectors
from runs import selectors_pages as pages
from runs.access import Principal
from runs.errors import InvalidInput, NotFound, StudioError
from runs.forms import (
    ACTION_KEYS,
    BUILTIN_COLUMNS,
    CHART_KINDS,
    PAGE_SIZES,
    SavedViewForm,
    SubmitForm,
    TableState,
    TokenCreateForm,
    choose_script,
    pack_upload,
)
from runs.lifecycle import ACTIVE, IllegalTransition, Status
from runs.models import ApiToken, Experiment, Run
from runs.services import execution, files, logs, metrics, saved_views, workspaces
from runs.services import runs as run_services

LOG_TAIL_BYTES = 256 * 1024  # what the Logs tab shows at first; "Download" gives the whole log
LOG_POLL_BYTES = 512 * 1024
INLINE_IMAGE_TYPES = {"image/png", "image/jpeg", "image/gif", "image/webp"}
# Paused while the tab is hidden by static/js/studio.js, which knows this trigger: an htmx
# [filter] here would need eval, which the pages' Content-Security-Policy forbids.
LIVE_POLL = "every 2s"


# --- plumbing ------------------------------------------------------------------------------------


def studio_view(view):
    """Sign-in required (htmx requests are sent to the sign-in page whole); NotFound → 404."""

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs):
        if not request.user.is_authenticated:
            if request.htmx:
                response = HttpResponse(status=204)
                response["HX-Redirect"] = f"{reverse('login')}?next={request.htmx.current_url_abs_path or '/'}"
                return response
            return redirect_to_login(request.get_full_path())
        try:
            return view(request, *args, **kwargs)
        except NotFound as exc:
            raise Http404(exc.message) from None

    return wrapper


def _partial(request: HttpRequest) -> bool:
    """An htmx swap (not a history restore, which needs the whole page)."""
    return bool(request.htmx) and not request.htmx.history_restore_request and not request.htmx.boosted


def _principal(request: HttpRequest) -> Principal:
    return Principal.of(request)


def _remember_workspace(request: HttpRequest, name: str) -> None:
    if request.session.get("workspace") != name:
        request.session["workspace"] = name


def _experiment_url(experiment: Experiment, query: str = "") -> str:
    url = reverse("runs:experiment", args=[experiment.workspace.name, experiment.name])
    return f"{url}?{query}" if query else url


# --- home, workspaces, tokens, search --------------------------------------------------------------


@studio_view
@require_GET
def home(request):
    names = list(selectors.workspaces_visible(_principal(request)).values_list("name", flat=True))
    if not names:
        return render(request, "runs/no_workspace.html")
    last = request.session.get("workspace")
    return redirect("runs:workspace", workspace=last if last in names else names[0])


@studio_view
@require_GET
def workspace_page(request, workspace: str):
    principal = _principal(request)
    ws = selectors.workspace_get(principal, workspace)
    _remember_workspace(request, ws.name)
    q = request.GET.get("q", "").strip()[:100]
    experiments = list(pages.experiments_list(principal, ws, q)[:200])
    context = {"workspace": ws, "experiments": experiments, "q": q}
    if _partial(request):
        return render(request, "runs/partials/experiment_list.html", context)
    context.update(pages.workspace_summary(principal, ws))
    context["views"] = list(pages.workspace_saved_views(principal, ws)[:100])
    return render(request, "runs/workspace.html", context)


@studio_view
@require_http_methods(["GET", "POST"])
def tokens(request):
    form = TokenCreateForm(request.POST or None)
    new_key = None
    if request.method == "POST" and form.is_valid():
        try:
            token, new_key = workspaces.token_create(request.user, form.cleaned_data["name"])
        except StudioError as exc:
            form.add_error("name", exc.message)
        else:
            form = TokenCreateForm()
            messages.success(request, f"Token '{token.name}' created. Copy the key now: it is not shown again.")
    items = ApiToken.objects.filter(user=request.user).order_by("revoked_at", "-created_at")
    return render(request, "runs/tokens.html", {"form": form, "tokens": items, "new_key": new_key})


@studio_view
@require_POST
def token_revoke(request, token_id: int):
    token = workspaces.token_revoke(request.user, token_id)
    messages.success(request, f"Token '{token.name}' revoked; programs using it can no longer sign in.")
    return redirect("runs:tokens")


@studio_view
@require_GET
def search(request):
    q = request.GET.get("q", "").strip()[:300]
    after = request.GET.get("after", "")
    results, next_after = [], None
    if q:
        results, next_after = pages.search_runs(_principal(request), q, after=int(after) if after.isdigit() else None)
    context = {
        "q": q,
        "search_q": q,
        "results": results,
        "next_query": urlencode({"q": q, "after": next_after}) if next_after else None,
    }
    if _partial(request):
        return render(request, "runs/partials/search_results.html", context)
    return render(request, "runs/search.html", context)


# --- the experiment page and custom views -------------------------------------------------------


def _experiment_context(request, principal: Principal, experiment: Experiment, state: TableState) -> dict:
    notes = list(state.notes)
    try:
        page = pages.runs_page(principal, experiment, state)
    except InvalidInput as exc:
        notes.append(exc.message)
        state = state.with_(after="", before="")
        page = pages.runs_page(principal, experiment, state)
    selected, missing = pages.selection(principal, experiment, state.sel)
    on_page = {r.number for r in page.rows}
    view = None
    if state.view is not None:
        try:
            view = pages.saved_view_get(principal, experiment, state.view)
        except NotFound:
            notes.append(f"saved view {state.view} no longer exists; showing the state from the link")
    query = state.to_query()
    live_query = state.to_query(paging=False)
    return {
        "workspace": experiment.workspace,
        "experiment": experiment,
        "state": state,
        "page": page,
        "query": query,
        "live_query": live_query,
        "selected": set(state.sel),
        "selected_runs": selected,
        "selected_off_page": [n for n in state.sel if n not in on_page],
        "missing": missing,
        "notes": notes,
        "view": view,
        "view_modified": view is not None and view.state != state.saved_form(),
        "charts": list(enumerate(state.charts)),
        "counts": pages.counts(principal, experiment),
        "live_trigger": LIVE_POLL,
        "column_labels": BUILTIN_COLUMNS,
        "statuses": Status.values,
        "page_sizes": PAGE_SIZES,
        "chart_kinds": CHART_KINDS,
        "views": list(pages.saved_views_of(principal, experiment)),
    }


@studio_view
@require_GET
def experiment_page(request, workspace: str, experiment: str):
    principal = _principal(request)
    exp = pages.experiment_for_page(principal, workspace, experiment)
    state = TableState.parse(request.GET)
    acted = any(key in request.GET for key in ACTION_KEYS) or "cols_form" in request.GET
    if acted:
        state = state.apply_actions(request.GET)
        state = state.with_() if TableState.has_actions(request.GET) else state
        if not request.htmx and not state.notes:
            return HttpResponseRedirect(_experiment_url(exp, state.to_query()))
    context = _experiment_context(request, principal, exp, state)
    if _partial(request):
        context["partial"] = True
        response = render(request, "runs/partials/experiment_results.html", context)
        response["HX-Push-Url"] = _experiment_url(exp, context["query"])
        return response
    _remember_workspace(request, exp.workspace.name)
    choices = pages.column_choices(exp)
    offered = {f"m:{n}" for n in choices["metrics"]} | {f"p:{n}" for n in choices["properties"]}
    context["choices"] = choices
    context["targets"] = list(selectors.compute_targets(principal, exp.workspace).values_list("name", flat=True))
    context["other_columns"] = [c for c in state.cols if c not in BUILTIN_COLUMNS and c not in offered]
    return render(request, "runs/experiment.html", context)


@studio_view
@require_GET
def experiment_live(request, workspace: str, experiment: str):
    """What changed among the rows a page shows since it was rendered: 204, or those rows (out of band)."""
    principal = _principal(request)
    exp = pages.experiment_for_page(principal, workspace, experiment)
    try:
        since = pages.parse_since(request.GET.get("since"))
    except InvalidInput as exc:
        return HttpResponseBadRequest(exc.message)
    state = TableState.parse(request.GET)
    ids = pages.parse_ids(request.GET.get("ids"))
    top = request.GET.get("top", "")
    from django.utils import timezone

    now = timezone.now()
    changed = pages.live_rows(principal, exp, ids, since, state.column_names("m"))
    new_runs = 0
    if top.isdigit():
        new_runs = pages.filtered_runs(principal, exp, state).filter(number__gt=int(top)).count()
    if not changed and not new_runs:
        return HttpResponse(status=204)
    rows = pages.rows_by_pk(principal, exp, changed, state)
    still_active = [pk for pk in ids if pk not in changed] + [r.pk for r in rows if r.status in ACTIVE]
    context = {
        "experiment": exp,
        "workspace": exp.workspace,
        "state": state,
        "rows": rows,
        "selected": set(state.sel),
        "new_runs": new_runs,
        "counts": pages.counts(principal, exp),
        "live_query": state.to_query(paging=False),
        "live_trigger": LIVE_POLL,
        "poll_since": int(now.timestamp() * 1_000_000),
        "poll_ids": ",".join(str(pk) for pk in sorted(set(still_active))),
        "poll_top": "" if new_runs else top,
    }
    return render(request, "runs/partials/live_rows.html", context)


@studio_view
@require_GET
def experiment_chart(request, workspace: str, experiment: str, index: int):
    principal = _principal(request)
    exp = pages.experiment_for_page(principal, workspace, experiment)
    state = TableState.parse(request.GET)
    if index >= len(state.charts):
        raise Http404("no such chart in this view")
    chart = state.charts[index]
    try:
        figure = pages.chart_figure(principal, exp, state, chart)
    except StudioError as exc:
        return render(request, "runs/partials/chart_error.html", {"message": exc.message})
    return render(
        request,
        "runs/partials/metric_chart.html",
        {"figure": figure, "figure_id": f"figure-{index}", "title": chart.title, "chart": chart},
    )


# --- saved views -----------------------------------------------------------------------------------


@studio_view
@require_POST
def view_create(request, workspace: str, experiment: str):
    principal = _principal(request)
    exp = pages.experiment_for_page(principal, workspace, experiment)
    state = request.POST.get("state", "")
    try:
        view = saved_views.view_create(principal, exp, request.POST.get("name"), state)
    except StudioError as exc:
        messages.error(request, f"The view was not saved: {exc.message}")
        return HttpResponseRedirect(_experiment_url(exp, TableState.parse(_qd(state)).to_query()))
    messages.success(request, f"Saved view '{view.name}'. Its link opens it for every member of {workspace}.")
    return HttpResponseRedirect(_view_url(exp, view))


def _qd(query: str):
    from django.http import QueryDict

    return QueryDict(query.lstrip("?")[:10_000])


def _view_url(experiment: Experiment, view) -> str:
    state = TableState.parse(_qd(view.state))
    return _experiment_url(experiment, state.with_(view=view.pk).to_query())


@studio_view
@require_GET
def view_open(request, workspace: str, experiment: str, view_id: int):
    """A saved view's own address: opens the experiment page with its state in the URL."""
    principal = _principal(request)
    exp = pages.experiment_for_page(principal, workspace, experiment)
    view = pages.saved_view_get(principal, exp, view_id)
    return HttpResponseRedirect(_view_url(exp, view))


@studio_view
@require_POST
def view_change(request, workspace: str, experiment: str, view_id: int, action: str):
    principal = _principal(request)
    exp = pages.experiment_for_page(principal, workspace, experiment)
    view = pages.saved_view_get(principal, exp, view_id)
    try:
        if action == "rename":
            form = SavedViewForm(request.POST)
            saved_views.view_rename(principal, view, form.data.get("name"))
            messages.success(request, f"View renamed to '{view.name}'.")
        elif action == "update":
            saved_views.view_update(principal, view, request.POST.get("state", ""))
            messages.success(request, f"View '{view.name}' now holds the current filters, columns and charts.")
        elif action == "delete":
            name = view.name
            saved_views.view_delete(principal, view)
            messages.success(request, f"View '{name}' deleted.")
            return HttpResponseRedirect(_experiment_url(exp))
        else:
            raise Http404("unknown action")
    except StudioError as exc:
        messages.error(request, exc.message)
    return HttpResponseRedirect(_view_url(exp, view))


# --- submitting runs --------------------------------------------------------------------------------


def _submit_form(request, principal: Principal, workspace, *, initial: dict, data=None) -> SubmitForm:
    experiments = list(
        selectors.experiments_visible(principal)
        .filter(workspace=workspace)
        .order_by("name")
        .values_list("name", flat=True)
    )
    targets = list(selectors.compute_targets(principal, workspace).values_list("name", flat=True))
    previous = (
        selectors.runs_visible(principal)
        .filter(experiment__workspace=workspace, snapshot__isnull=False)
        .select_related("experiment")
        .order_by("-pk")[:50]
    )
    runs = [(r.run_id, f"{r.experiment.name} #{r.number} {r.display_name}".strip()) for r in previous]
    initial = {"compute_target": workspace.default_compute_target, **initial}
    if initial.get("from_run") and initial["from_run"] not in {r for r, _ in runs}:
        runs.insert(0, (initial["from_run"], initial["from_run"]))
    return SubmitForm(data, request.FILES or None, initial=initial, experiments=experiments, targets=targets, runs=runs)


def _handle_submit(request, principal: Principal, workspace, form: SubmitForm):
    """Validate, store the snapshot, submit. Returns the run, or None with errors on the form."""
    if not form.is_valid():
        return None
    data = form.cleaned_data
    try:
        experiment, _ = workspaces.experiment_get_or_create(principal, workspace, data["experiment"])
        if data["source"] == SubmitForm.SOURCE_UPLOAD:
            uploads = request.FILES.getlist("folder") + request.FILES.getlist("files")
            paths = _relative_paths(request, len(request.FILES.getlist("folder")))
            paths += [f.name for f in request.FILES.getlist("files")]
            source = pack_upload(uploads, paths)
            snapshot = execution.snapshot_store(principal, workspace, source.stream)
            script = choose_script(data["script"], execution.snapshot_names(snapshot))
        else:
            previous = selectors.run_get(principal, data["from_run"])
            if previous.experiment.workspace_id != workspace.pk or previous.snapshot is None:
                raise InvalidInput("that run has no snapshot in this workspace to reuse", field="from_run")
            snapshot = previous.snapshot
            script = choose_script(
                data["script"] or (previous.run_definition or {}).get("script") or "",
                execution.snapshot_names(snapshot),
            )
        return execution.run_submit(
            principal,
            experiment,
            {
                "snapshot": snapshot.sha256,
                "script": script,
                "arguments": data["arguments"],
                "compute_target": data["compute_target"],
                "display_name": data["display_name"],
            },
        )
    except StudioError as exc:
        field = exc.field if exc.field in form.fields else None
        if exc.field == "script":
            field = "script"
        form.add_error(field, exc.message)
        return None


def _relative_paths(request, count: int) -> list[str]:
    try:
        paths = json.loads(request.POST.get("folder_paths") or "[]")
    except (json.JSONDecodeError, RecursionError):  # a hint from the browser; nested deep, it is no hint
        paths = []
    if not isinstance(paths, list) or len(paths) != count or not all(isinstance(p, str) for p in paths):
        return [f.name for f in request.FILES.getlist("folder")]
    return paths


@studio_view
@require_http_methods(["GET", "POST"])
def submit(request, workspace: str, experiment: str | None = None):
    principal = _principal(request)
    ws = selectors.workspace_get(principal, workspace)
    exp = pages.experiment_for_page(principal, workspace, experiment) if experiment else None
    initial = {"experiment": exp.name if exp else "", "source": SubmitForm.SOURCE_UPLOAD}
    form = _submit_form(
        request, principal, ws, initial=initial, data=request.POST if request.method == "POST" else None
    )
    if request.method == "POST":
        run = _handle_submit(request, principal, ws, form)
        if run is not None:
            messages.success(request, f"Run #{run.number} submitted to {run.compute_target}.")
            return redirect("runs:run_logs", run_id=run.run_id)
    return render(request, "runs/submit.html", _submit_context(form, ws, exp, None))


@studio_view
@require_http_methods(["GET", "POST"])
def run_resubmit(request, run_id: str):
    principal = _principal(request)
    run = pages.run_for_page(principal, run_id)
    ws = run.experiment.workspace
    definition = run.run_definition or {}
    import shlex

    initial = {
        "experiment": run.experiment.name,
        "compute_target": run.compute_target,
        "source": SubmitForm.SOURCE_SNAPSHOT if run.snapshot_id else SubmitForm.SOURCE_UPLOAD,
        "from_run": run.run_id if run.snapshot_id else "",
        "script": definition.get("script") or "",
        "arguments": shlex.join(definition.get("arguments") or []),
        "display_name": run.display_name,
    }
    form = _submit_form(
        request, principal, ws, initial=initial, data=request.POST if request.method == "POST" else None
    )
    if request.method == "POST":
        new_run = _handle_submit(request, principal, ws, form)
        if new_run is not None:
            messages.success(request, f"Run #{new_run.number} submitted to {new_run.compute_target}.")
            return redirect("runs:run_logs", run_id=new_run.run_id)
    return render(request, "runs/submit.html", _submit_context(form, ws, run.experiment, run))


def _submit_context(form: SubmitForm, workspace, experiment, resubmit) -> dict:
    from django.conf import settings

    return {
        "form": form,
        "workspace": workspace,
        "experiment": experiment,
        "resubmit": resubmit,
        "max_snapshot": settings.STUDIO_SNAPSHOT_MAX_BYTES,
    }


# --- one run ---------------------------------------------------------------------------------------


def _run_context(request, run: Run, tab: str) -> dict:
    return {
        "run": run,
        "experiment": run.experiment,
        "workspace": run.experiment.workspace,
        "tab": tab,
        "is_active": run.status in ACTIVE,
        "can_cancel": run.status in ACTIVE and selectors.is_member(request.user, run.experiment.workspace),
        "since": _micros(run.status_changed_at),
        "tags": sorted(run.tag_set.all(), key=lambda t: t.pk),
        "properties": sorted(run.property_set.all(), key=lambda p: p.pk),
        "live_trigger": LIVE_POLL,
    }


def _micros(value) -> int:
    return int(value.timestamp() * 1_000_000) if value else 0


@studio_view
@require_GET
def run_page(request, run_id: str):
    principal = _principal(request)
    run = pages.run_for_page(principal, run_id)
    context = _run_context(request, run, "overview")
    tree, total = pages.run_tree(principal, run)
    context.update(
        {
            "tree": tree,
            "tree_total": total,
            "events": pages.run_events(run),
            "log_files": logs.log_files(run),
        }
    )
    return render(request, "runs/run_overview.html", context)


@studio_view
@require_GET
def run_live(request, run_id: str):
    """The run header, when its status changed since the page's copy; 204 otherwise."""
    run = pages.run_for_page(_principal(request), run_id)
    try:
        since = int(request.GET.get("since", "0"))
    except ValueError:
        since = 0
    if _micros(run.status_changed_at) <= since and run.status in ACTIVE:
        return HttpResponse(status=204)
    return render(request, "runs/partials/run_header.html", _run_context(request, run, request.GET.get("tab", "")))


@studio_view
@require_http_methods(["GET", "POST"])
def run_cancel(request, run_id: str):
    """GET: a confirmation page (for browsers without JavaScript). POST: cancel."""
    principal = _principal(request)
    run = pages.run_for_page(principal, run_id)
    if not selectors.is_member(request.user, run.experiment.workspace):
        raise Http404("run not found")
    if request.method == "GET":
        return render(request, "runs/run_cancel.html", _run_context(request, run, "overview"))
    try:
        run_services.run_cancel(principal, run)
    except (IllegalTransition, StudioError) as exc:
        messages.error(request, str(exc))
    else:
        if not request.htmx:
            messages.success(request, f"Run #{run.number}: cancel requested.")
    if request.htmx:
        run = pages.run_for_page(principal, run_id)
        return render(request, "runs/partials/run_header.html", _run_context(request, run, request.POST.get("tab", "")))
    return redirect("runs:run", run_id=run.run_id)


@studio_view
@require_GET
def run_metrics(request, run_id: str):
    run = pages.run_for_page(_principal(request), run_id)
    context = _run_context(request, run, "metrics")
    context["metrics"] = pages.run_metrics(run)
    context["x"] = "time" if request.GET.get("x") == "time" else "step"
    return render(request, "runs/run_metrics.html", context)


@studio_view
@require_GET
def run_metric_chart(request, run_id: str):
    run = pages.run_for_page(_principal(request), run_id)
    x = "time" if request.GET.get("x") == "time" else "step"
    series = metrics.series_get(run, request.GET.get("name", ""))
    try:
        figure = pages.metric_figure(run, series, x)
    except StudioError as exc:
        return render(request, "runs/partials/chart_error.html", {"message": exc.message})
    index = request.GET.get("i", "0")
    return render(
        request,
        "runs/partials/metric_chart.html",
        {"figure": figure, "figure_id": f"metric-{index if index.isdigit() else 0}", "title": series.name},
    )


LOG_LABELS = {
    logs.DRIVER_LOG: "Driver log",
    logs.DIAGNOSTIC_LOG: "Diagnostic log",
    logs.ERROR_LOG: "Error log",
    logs.USER_LOG: "User log",
}


def _log_choice(run: Run, requested: str | None) -> tuple[list[str], str | None]:
    """The log tabs to offer and the one to show.

    While a run is active its driver log (the script's output) is the default
    even before its first byte arrives, so the tab starts tailing it at once.
    """
    names = [f.name for f in logs.log_files(run)]
    if run.is_managed and run.status in ACTIVE and logs.DIAGNOSTIC_LOG not in names:
        # The runner writes its diagnostic log from its first moment: offer it at once.
        names.append(logs.DIAGNOSTIC_LOG)
    if requested in names:
        return names, requested
    if logs.DRIVER_LOG in names or run.status in ACTIVE:
        chosen = logs.DRIVER_LOG
    else:
        chosen = next((n for n in (logs.USER_LOG, logs.DIAGNOSTIC_LOG, logs.ERROR_LOG) if n in names), None)
        chosen = chosen or (names[0] if names else None)
    tabs = names if chosen in names or chosen is None else [chosen, *names]
    return tabs, chosen


@studio_view
@require_GET
def run_logs(request, run_id: str):
    run = pages.run_for_page(_principal(request), run_id)
    context = _run_context(request, run, "logs")
    tabs, name = _log_choice(run, request.GET.get("name"))
    text, offset, truncated = "", 0, False
    if name is not None:
        try:
            start = max(0, logs.log_read(run, name, 0, 0)[1] - LOG_TAIL_BYTES)
            data, _size = logs.log_read(run, name, start, LOG_TAIL_BYTES + 64 * 1024)
            text, _skip, used = pages.decode_log(data, at_start=start == 0)
            offset, truncated = start + used, start > 0
        except NotFound:
            pass  # not written yet: the tail starts at 0
    context.update(
        {
            "log_tabs": tabs,
            "log_name": name,
            "log_text": text,
            "log_offset": offset,
            "log_truncated": truncated,
            "log_labels": LOG_LABELS,
        }
    )
    return render(request, "runs/run_logs.html", context)


@studio_view
@require_GET
def run_log_tail(request, run_id: str):
    """Log bytes after `offset`: 204 while nothing is new, 286 (stop polling) once the run ended."""
    run = pages.run_for_page(_principal(request), run_id)
    name = request.GET.get("name", "")
    try:
        offset = int(request.GET.get("offset", "0"))
    except ValueError:
        return HttpResponseBadRequest("offset must be an integer")
    try:
        data, _size = logs.log_read(run, name, max(0, offset), LOG_POLL_BYTES)
    except NotFound:
        data = b""
    except InvalidInput as exc:
        return HttpResponseBadRequest(exc.message)
    text, _skip, used = pages.decode_log(data, at_start=True)
    ended = run.status not in ACTIVE
    if not used:
        if not ended:
            return HttpResponse(status=204)
        # The run's last answer also refreshes the tabs: an error log may have appeared.
        tabs, _chosen = _log_choice(run, name)
        context = {"run": run, "ended": True, "text": "", "log_tabs": tabs, "log_name": name, "log_labels": LOG_LABELS}
        return render(request, "runs/partials/log_tail.html", context, status=286)
    context = {
        "run": run,
        "text": text,
        "ended": False,
        "log_name": name,
        "offset": offset + used,
        "live_trigger": "every 1s",
    }
    return render(request, "runs/partials/log_tail.html", context)


@studio_view
@require_GET
def run_log_download(request, run_id: str):
    run = pages.run_for_page(_principal(request), run_id)
    name = request.GET.get("name", "")
    try:
        logs.log_read(run, name, 0, 1)
    except InvalidInput as exc:
        return HttpResponseBadRequest(exc.message)
    path = logs.log_path(run, name)
    if not path.exists():
        raise Http404("the log has no content yet")
    filename = f"{run.run_id}-{name.rsplit('/', 1)[-1]}"
    return FileResponse(open(path, "rb"), as_attachment=True, filename=filename, content_type="text/plain")


@studio_view
@require_GET
def run_files(request, run_id: str):
    run = pages.run_for_page(_principal(request), run_id)
    context = _run_context(request, run, "files")
    context["files"] = list(files.file_list(run))
    snapshot_names, snapshot_error = [], None
    if run.snapshot_id:
        try:
            snapshot_names = execution.snapshot_names(run.snapshot)
        except StudioError as exc:
            snapshot_error = exc.message
    context.update({"snapshot_names": snapshot_names, "snapshot_error": snapshot_error})
    return render(request, "runs/run_files.html", context)


@studio_view
@require_GET
def run_file_view(request, run_id: str):
    run = pages.run_for_page(_principal(request), run_id)
    try:
        record, path = files.file_get(run, request.GET.get("name", ""))
    except InvalidInput as exc:
        return HttpResponseBadRequest(exc.message)
    context = _run_context(request, run, "files")
    text = None
    if record.size <= pages.TEXT_VIEW_MAX and path.exists():
        text = pages.as_text(path.read_bytes())
    context.update({"file_name": record.path, "file_size": record.size, "text": text, "source": "outputs"})
    return render(request, "runs/run_file_view.html", context)


@studio_view
@require_GET
def run_file_download(request, run_id: str):
    run = pages.run_for_page(_principal(request), run_id)
    try:
        record, path = files.file_get(run, request.GET.get("name", ""))
    except InvalidInput as exc:
        return HttpResponseBadRequest(exc.message)
    if not path.exists():
        raise Http404("the file's content is missing from storage")
    inline = request.GET.get("inline") == "1" and record.content_type in INLINE_IMAGE_TYPES
    response = FileResponse(
        open(path, "rb"),
        as_attachment=not inline,
        filename=record.path.rsplit("/", 1)[-1],
        content_type=record.content_type if inline else "application/octet-stream",
    )
    # Files are whatever a script wrote; never let one run as a page of the studio.
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    return response


@studio_view
@require_GET
def run_snapshot_view(request, run_id: str):
    run = pages.run_for_page(_principal(request), run_id)
    name, data = pages.snapshot_member(run, request.GET.get("name", ""))
    context = _run_context(request, run, "files")
    text = pages.as_text(data) if data is not None else None
    context.update({"file_name": name, "text": text, "source": "snapshot"})
    return render(request, "runs/run_file_view.html", context)


@studio_view
@require_GET
def run_snapshot_download(request, run_id: str):
    run = pages.run_for_page(_principal(request), run_id)
    if run.snapshot is None:
        raise Http404("this run has no snapshot")
    name = request.GET.get("name")
    if name:
        name, data = pages.snapshot_member(run, name)
        if data is None:
            raise Http404("the file is too large to serve alone; download the whole snapshot")
        response = HttpResponse(data, content_type="application/octet-stream")
        response["Content-Disposition"] = content_disposition_header(True, name.rsplit("/", 1)[-1])
        return response
    return FileResponse(
        open(execution.snapshot_path(run.snapshot.sha256), "rb"),
        as_attachment=True,
        filename=f"{run.run_id}-snapshot.zip",
        content_type="application/zip",
    )
