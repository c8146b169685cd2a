"""The MLflow tracking REST API (/api/2.0/mlflow/...), as the official `mlflow` client calls it.

Thin: parse the request (runs.mlflow.protocol), call one selector or service,
render (runs.mlflow.mapping, runs.mlflow.queries). Who may see and change what,
immutable params, the run lifecycle and file rules all stay in runs.selectors
and runs.services; errors they raise are translated into MLflow's error codes
by runs.mlflow.errors.

The workspace a request works in, when it needs one (creating experiments,
names, experiment "0"): the `w/<workspace>/` URL prefix, else the
X-MLFLOW-WORKSPACE header (sent by `mlflow.set_workspace()` / MLFLOW_WORKSPACE)
or X-Studio-Workspace, else the caller's first workspace.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Callable
from functools import wraps

import numpy as np
import orjson
from django.core.exceptions import SuspiciousOperation
from django.db import transaction
from django.http import FileResponse, HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from django.views.decorators.csrf import csrf_exempt
from rest_framework import exceptions as drf_exceptions

from runs import selectors
from runs.access import Principal
from runs.auth import BasicTokenAuthentication, TokenAuthentication
from runs.errors import Conflict, NotFound, StudioError
from runs.lifecycle import IllegalTransition, Status
from runs.mlflow import mapping, protocol, queries, search
from runs.mlflow.errors import (
    ENDPOINT_NOT_FOUND,
    INTERNAL_ERROR,
    RESOURCE_ALREADY_EXISTS,
    RESOURCE_DOES_NOT_EXIST,
    UNAUTHENTICATED,
    MlflowError,
    error_response,
    from_studio_error,
    invalid,
)
from runs.models import Experiment, MetricSeries, Run, Workspace
from runs.services import files, metrics, mlflow_support, workspaces
from runs.services import runs as run_services

logger = logging.getLogger(__name__)

WORKSPACE_HEADERS = ("HTTP_X_MLFLOW_WORKSPACE", "HTTP_X_STUDIO_WORKSPACE")
SEARCH_MAX_RESULTS_DEFAULT = 1000
SEARCH_MAX_RESULTS_THRESHOLD = 50000
HISTORY_BULK_MAX_RUNS = 100
HISTORY_BULK_MAX_RESULTS = 2500

_AUTHENTICATORS = (TokenAuthentication(), BasicTokenAuthentication())
_UNAUTHENTICATED_MESSAGE = (
    "Authentication required: set MLFLOW_TRACKING_TOKEN to a Run Studio API token (or MLFLOW_TRACKING_USERNAME "
    "and MLFLOW_TRACKING_PASSWORD, with the token as the password)."
)


# --- request plumbing ------------------------------------------------------------------------------------


class Call:
    """One API request: who asks, its fields, and (resolved on first use) its workspace."""

    def __init__(self, request: HttpRequest, principal: Principal, url_workspace: str | None):
        self.request = request
        self.principal = principal
        self.url_workspace = url_workspace
        self._args: protocol.Payload | None = None
        self._workspace: Workspace | None = None

    @property
    def args(self) -> protocol.Payload:
        if self._args is None:
            self._args = protocol.Payload.of(self.request)
        return self._args

    def workspace(self) -> Workspace:
        if self._workspace is None:
            self._workspace = self._resolve_workspace()
        return self._workspace

    def _resolve_workspace(self) -> Workspace:
        named = {self.request.META[h].strip() for h in WORKSPACE_HEADERS if self.request.META.get(h, "").strip()}
        if self.url_workspace:
            named.add(self.url_workspace)
        if len(named) > 1:
            raise MlflowError(
                f"the request names several workspaces ({', '.join(sorted(named))}) in its URL and headers; name one"
            )
        if named:
            return selectors.workspace_get(self.principal, named.pop())
        return mlflow_support.default_workspace(self.principal)


def _authenticate(request: HttpRequest) -> Principal:
    for authenticator in _AUTHENTICATORS:
        try:
            result = authenticator.authenticate(request)
        except drf_exceptions.AuthenticationFailed as exc:
            raise MlflowError(str(exc.detail), UNAUTHENTICATED) from None
        if result is not None:
            user, auth = result
            return Principal(user=user, run=auth if isinstance(auth, Run) else None)
    # A signed-in studio session may read (the studio's pages can use ajax-api); writes
    # need a token because these endpoints take no CSRF token.
    if request.method == "GET" and request.user.is_authenticated:
        return Principal(user=request.user)
    raise MlflowError(_UNAUTHENTICATED_MESSAGE, UNAUTHENTICATED)


def endpoint(*methods: str, authenticated: bool = True) -> Callable:
    """Wrap a handler(call, **kwargs) -> dict | HttpResponse with auth and MLflow's error format."""

    def decorate(handler: Callable) -> Callable:
        @csrf_exempt
        @wraps(handler)
        def view(request: HttpRequest, workspace: str | None = None, **kwargs) -> HttpResponse:
            if request.method not in methods:
                response = error_response(
                    MlflowError(f"{request.method} is not allowed here; use {' or '.join(methods)}", "BAD_REQUEST")
                )
                response.status_code = 405
                response["Allow"] = ", ".join(methods)
                return response
            try:
                principal = _authenticate(request) if authenticated else Principal(user=request.user)
                result = handler(Call(request, principal, workspace), **kwargs)
            except MlflowError as exc:
                return _error(exc)
            except (StudioError, IllegalTransition) as exc:
                return _error(from_studio_error(exc))
            except SuspiciousOperation:
                raise  # a body or query past Django's limits: studio.request_limits.bad_request names the limit
            except Exception:
                logger.exception("MLflow API %s %s failed", request.method, request.path)
                return _error(MlflowError("internal error; see the server log", INTERNAL_ERROR))
            if isinstance(result, HttpResponseBase):
                return result
            return HttpResponse(orjson.dumps(result), content_type="application/json")

        return view

    return decorate


def _error(exc: MlflowError) -> HttpResponse:
    headers = {"WWW-Authenticate": 'Basic realm="Run Studio"'} if exc.error_code == UNAUTHENTICATED else None
    return error_response(exc, headers=headers)


@csrf_exempt
def not_found(request: HttpRequest, workspace: str | None = None, rest: str = "") -> HttpResponse:
    return error_response(
        MlflowError(f"{request.path} is not an MLflow endpoint this server provides", ENDPOINT_NOT_FOUND)
    )


# --- lookups ------------------------------------------------------------------------------------------------


def _experiment(call: Call, raw_id: str) -> Experiment:
    if raw_id == mapping.DEFAULT_EXPERIMENT_ID:
        return mlflow_support.experiment_default(call.principal, call.workspace())
    if not raw_id.isdigit():
        raise MlflowError(f"Invalid experiment ID '{raw_id}'. Experiment ID must be a valid integer.")
    experiment = (
        selectors.experiments_visible(call.principal).select_related("workspace").filter(pk=int(raw_id)).first()
    )
    if experiment is None:
        raise MlflowError(f"No Experiment with id={raw_id} exists", RESOURCE_DOES_NOT_EXIST)
    return experiment


def _run(call: Call, run_id: str, *, write: bool = False, deleted_ok: bool = False) -> Run:
    """A visible run (deleted ones too: MLflow reads and restores them); writes need an active one."""
    try:
        # Only the experiment is joined: MLflow calls need no other related row, and this
        # lookup is on every log_metric.
        run = selectors.run_get(call.principal, run_id, for_write=write, include_deleted=True, related=("experiment",))
    except NotFound:
        raise MlflowError(f"Run with id={run_id} not found", RESOURCE_DOES_NOT_EXIST) from None
    if write and not deleted_ok and run.deleted_at is not None:
        raise MlflowError(f"The run {run_id} must be in the 'active' state. Current state is deleted.")
    return run


def _run_id(call: Call) -> str:
    return call.args.string("run_id", required=True, alias="run_uuid")  # type: ignore[return-value]


def _check_experiment_active(experiment: Experiment) -> None:
    if experiment.archived_at is not None:
        exp_id = mapping.experiment_id(experiment.pk, experiment.name)
        raise MlflowError(f"The experiment {exp_id} must be in the 'active' state. Current state is deleted.")


# --- experiments ----------------------------------------------------------------------------------------------


@endpoint("POST")
def experiments_create(call: Call) -> dict:
    name = call.args.string("name", required=True)
    if call.args.string("artifact_location"):
        raise MlflowError("artifact_location cannot be set: Run Studio stores every run's artifacts itself")
    tags = call.args.objects("tags")
    unsupported = [t.get("key") for t in tags if t.get("key") != mapping.NOTE_TAG]
    if unsupported:
        raise MlflowError(
            f"experiment tags {unsupported} cannot be stored: Run Studio keeps only {mapping.NOTE_TAG} "
            "(the experiment's description)"
        )
    experiment, created = workspaces.experiment_get_or_create(call.principal, call.workspace(), name)
    if not created:
        raise MlflowError(f"Experiment(name={name}) already exists.", RESOURCE_ALREADY_EXISTS)
    for tag in tags:
        mlflow_support.experiment_describe(call.principal, experiment, tag.get("value") or "")
    return {"experiment_id": mapping.experiment_id(experiment.pk, experiment.name)}


@endpoint("GET", "POST")
def experiments_get(call: Call) -> dict:
    experiment = _experiment(call, call.args.string("experiment_id", required=True))  # type: ignore[arg-type]
    return {"experiment": mapping.experiment_json(experiment)}


@endpoint("GET", "POST")
def experiments_get_by_name(call: Call) -> dict:
    name = call.args.string("experiment_name", required=True)
    if name == mapping.DEFAULT_EXPERIMENT_NAME:
        experiment = mlflow_support.experiment_default(call.principal, call.workspace())
    else:
        experiment = selectors.experiments_visible(call.principal).filter(workspace=call.workspace(), name=name).first()
    if experiment is None:
        raise MlflowError(f"Could not find experiment with name '{name}'", RESOURCE_DOES_NOT_EXIST)
    return {"experiment": mapping.experiment_json(experiment)}


def _view_type(call: Call, name: str) -> int:
    raw = call.args.raw(name)
    if raw is None or raw == "":
        return mapping.ACTIVE_ONLY
    if isinstance(raw, str) and raw in mapping.VIEW_TYPES:
        return mapping.VIEW_TYPES[raw]
    number = protocol.as_int(raw)
    if number not in (mapping.ACTIVE_ONLY, mapping.DELETED_ONLY, mapping.ALL):
        raise invalid(name, raw, "use ACTIVE_ONLY, DELETED_ONLY or ALL.")
    return number  # type: ignore[return-value]


def _max_results(call: Call) -> int:
    value = call.args.integer("max_results", default=SEARCH_MAX_RESULTS_DEFAULT)
    if value is None or value < 1 or value > SEARCH_MAX_RESULTS_THRESHOLD:
        raise MlflowError(
            f"Invalid value {value} for parameter 'max_results' supplied. It must be at most "
            f"{SEARCH_MAX_RESULTS_THRESHOLD} and at least 1."
        )
    return value


@endpoint("GET", "POST")
def experiments_search(call: Call) -> dict:
    view_type = _view_type(call, "view_type")
    size = _max_results(call)
    clauses = search.parse_experiment_filter(call.args.string("filter"))
    order = search.parse_experiment_order_by(call.args.strings("order_by"))
    offset = queries.page_offset(call.args.string("page_token"))
    experiments = selectors.experiments_visible(call.principal).filter(workspace=call.workspace())
    if view_type == mapping.ACTIVE_ONLY:
        experiments = experiments.filter(archived_at__isnull=True)
    elif view_type == mapping.DELETED_ONLY:
        experiments = experiments.filter(archived_at__isnull=False)
    experiments = queries.order_experiments(queries.filter_experiments(experiments, clauses), order)
    page = list(experiments[offset : offset + size + 1])
    out: dict = {"experiments": [mapping.experiment_json(e) for e in page[:size]]}
    if len(page) > size:
        out["next_page_token"] = queries.page_token(offset + size)
    return out


@endpoint("POST")
def experiments_delete(call: Call) -> dict:
    experiment = _experiment(call, call.args.string("experiment_id", required=True))  # type: ignore[arg-type]
    if experiment.name == mapping.DEFAULT_EXPERIMENT_NAME:
        raise MlflowError("Cannot delete the default experiment '0'. This is an internally reserved experiment.")
    mlflow_support.experiment_archive(call.principal, experiment)
    return {}


@endpoint("POST")
def experiments_restore(call: Call) -> dict:
    experiment = _experiment(call, call.args.string("experiment_id", required=True))  # type: ignore[arg-type]
    mlflow_support.experiment_restore(call.principal, experiment)
    return {}


@endpoint("POST")
def experiments_update(call: Call) -> dict:
    experiment = _experiment(call, call.args.string("experiment_id", required=True))  # type: ignore[arg-type]
    new_name = call.args.string("new_name", required=True)
    if experiment.archived_at is not None:
        raise MlflowError("Cannot rename a non-active experiment.")
    try:
        mlflow_support.experiment_rename(call.principal, experiment, new_name)
    except Conflict as exc:
        raise MlflowError(exc.message, RESOURCE_ALREADY_EXISTS) from None
    return {}


@endpoint("POST")
def experiments_set_tag(call: Call) -> dict:
    experiment = _experiment(call, call.args.string("experiment_id", required=True))  # type: ignore[arg-type]
    key = call.args.string("key", required=True)
    if key != mapping.NOTE_TAG:
        raise MlflowError(
            f"experiment tag '{key}' cannot be stored: Run Studio keeps only {mapping.NOTE_TAG} "
            "(the experiment's description)"
        )
    mlflow_support.experiment_describe(call.principal, experiment, call.args.string("value") or "")
    return {}


@endpoint("POST")
def experiments_delete_tag(call: Call) -> dict:
    experiment = _experiment(call, call.args.string("experiment_id", required=True))  # type: ignore[arg-type]
    key = call.args.string("key", required=True)
    if key != mapping.NOTE_TAG or not experiment.description:
        raise MlflowError(f"No tag with name: {key} in experiment with id {experiment.pk}", RESOURCE_DOES_NOT_EXIST)
    mlflow_support.experiment_describe(call.principal, experiment, "")
    return {}


# --- runs ------------------------------------------------------------------------------------------------------


@endpoint("POST")
def runs_create(call: Call) -> dict:
    experiment = _experiment(call, call.args.string("experiment_id") or mapping.DEFAULT_EXPERIMENT_ID)
    _check_experiment_active(experiment)
    tags = dict(protocol.check_tag(t, f"tags[{i}]") for i, t in enumerate(call.args.objects("tags")))
    run_name = call.args.string("run_name")
    tag_name = tags.pop(mapping.RUN_NAME_TAG, None)
    if run_name and tag_name and run_name != tag_name:
        raise MlflowError(
            "Both 'run_name' argument and 'mlflow.runName' tag are specified, but with different values "
            f"(run_name='{run_name}', mlflow.runName='{tag_name}')."
        )
    parent_id = tags.pop(mapping.PARENT_TAG, None)
    spec = {
        "run_id": _new_run_id(),
        "display_name": run_name or tag_name or "",
        "description": tags.pop(mapping.NOTE_TAG, ""),
        "tags": tags,
    }
    if parent_id:
        parent = _run(call, parent_id, write=True)
        if parent.experiment_id != experiment.pk:
            where = mapping.experiment_id(parent.experiment_id, parent.experiment.name)
            raise MlflowError(
                f"run {parent_id} is in experiment {where}; Run Studio creates a child run in its parent's experiment"
            )
        run = run_services.children_create(call.principal, parent, {"children": [spec]})[0]
    else:
        run = run_services.run_start_logging(call.principal, experiment, spec)
    return {"run": queries.run_payload(run)}


def _new_run_id() -> str:
    return uuid.uuid4().hex


def _status_from(raw: object) -> str | None:
    if raw is None or raw == "":
        return None
    if isinstance(raw, str) and raw in mapping.MLFLOW_STATUSES:
        return raw
    number = protocol.as_int(raw)
    if number in mapping.STATUS_NUMBERS:
        return mapping.STATUS_NUMBERS[number]  # type: ignore[index]
    raise invalid("status", raw, f"use one of {', '.join(mapping.MLFLOW_STATUSES)}.")


def _set_status(principal: Principal, run: Run, status: str) -> None:
    """Move a run to the Run Studio status that shows as `status`; the lifecycle decides what is allowed."""
    if status == mapping.FINISHED:
        run_services.run_complete(principal, run)
    elif status == mapping.FAILED:
        run_services.run_fail(principal, run, error_details="the run was marked FAILED by an MLflow client")
    elif status == mapping.KILLED:
        run_services.run_cancel(principal, run)
    elif status == mapping.RUNNING:
        if run.status in (Status.NOT_STARTED,):
            run_services.run_start(principal, run)
        elif mapping.TO_MLFLOW_STATUS[run.status] != mapping.RUNNING:
            raise IllegalTransition(run.run_id, run.status, Status.RUNNING)
    elif mapping.TO_MLFLOW_STATUS[run.status] != mapping.SCHEDULED:
        raise IllegalTransition(run.run_id, run.status, Status.QUEUED)


@endpoint("POST")
def runs_update(call: Call) -> dict:
    run = _run(call, _run_id(call), write=True)
    status = _status_from(call.args.raw("status"))
    run_name = call.args.string("run_name")
    if call.args.raw("end_time") is not None and protocol.as_int(call.args.raw("end_time")) is None:
        raise invalid("end_time", call.args.raw("end_time"), "end_time must be epoch milliseconds.")
    if run_name:
        run_services.run_update(call.principal, run, {"display_name": run_name})
    if status is not None:
        _set_status(call.principal, run, status)
    return {"run_info": queries.run_payload(run)["info"]}


@endpoint("POST")
def runs_delete(call: Call) -> dict:
    run = _run(call, _run_id(call), write=True, deleted_ok=True)
    mlflow_support.run_soft_delete(call.principal, run)
    return {}


@endpoint("POST")
def runs_restore(call: Call) -> dict:
    run = _run(call, _run_id(call), write=True, deleted_ok=True)
    mlflow_support.run_restore(call.principal, run)
    return {}


@endpoint("GET", "POST")
def runs_get(call: Call) -> dict:
    return {"run": queries.run_payload(_run(call, _run_id(call)))}


@endpoint("POST", "GET")
def runs_search(call: Call) -> dict:
    view_type = _view_type(call, "run_view_type")
    size = _max_results(call)
    clauses = search.parse_run_filter(call.args.string("filter"))
    order = search.parse_run_order_by(call.args.strings("order_by"))
    offset = queries.page_offset(call.args.string("page_token"))
    experiment_pks = []
    for raw in call.args.strings("experiment_ids"):
        if raw == mapping.DEFAULT_EXPERIMENT_ID:
            experiment_pks.append(mlflow_support.experiment_default(call.principal, call.workspace()).pk)
        elif raw.isdigit():
            experiment_pks.append(int(raw))
        else:
            raise MlflowError(f"Invalid experiment ID '{raw}'. Experiment ID must be a valid integer.")
    runs = selectors.runs_visible(call.principal, include_deleted=view_type != mapping.ACTIVE_ONLY)
    runs = runs.filter(experiment_id__in=experiment_pks)
    if view_type == mapping.DELETED_ONLY:
        runs = runs.filter(deleted_at__isnull=False)
    runs = queries.order_runs(queries.filter_runs(queries.annotate_runs(runs, clauses, order), clauses), order)
    page = queries.run_payloads(runs[offset : offset + size + 1])
    out: dict = {"runs": page[:size]}
    if len(page) > size:
        out["next_page_token"] = queries.page_token(offset + size)
    return out


def _param_conflict(run: Run, wanted: dict[str, str], *, single: bool) -> MlflowError:
    """MLflow's own words for a param whose value would change (properties are immutable)."""
    stored = run_services.properties_of(run)
    changed = [
        {"key": key, "old_value": stored[key], "new_value": value}
        for key, value in wanted.items()
        if key in stored and stored[key] != value
    ]
    if single and changed:
        c = changed[0]
        return MlflowError(
            f"Changing param values is not allowed. Param with key='{c['key']}' was already logged with "
            f"value='{c['old_value']}' for run ID='{run.run_id}'. Attempted logging new value '{c['new_value']}'."
        )
    return MlflowError(
        f"Changing param values is not allowed. Params were already logged='{changed}' for run ID='{run.run_id}'."
    )


def _add_params(call: Call, run: Run, params: dict[str, str], *, single: bool) -> None:
    try:
        run_services.properties_add(call.principal, run, params)
    except Conflict as exc:
        if exc.code != "property_immutable":
            raise
        raise _param_conflict(run, params, single=single) from None


def _set_tags(call: Call, run: Run, tags: dict[str, str]) -> None:
    """Tags, with the three MLflow tags that are run fields here (name, description, parent)."""
    fields = {}
    if mapping.RUN_NAME_TAG in tags:
        fields["display_name"] = tags.pop(mapping.RUN_NAME_TAG)
    if mapping.NOTE_TAG in tags:
        fields["description"] = tags.pop(mapping.NOTE_TAG)
    if mapping.PARENT_TAG in tags:
        parent = tags.pop(mapping.PARENT_TAG)
        current = run.parent.run_id if run.parent_id else ""
        if parent != current:
            raise MlflowError(
                f"{mapping.PARENT_TAG} can only be set when a run is created (run {run.run_id} has "
                f"{'parent ' + current if current else 'no parent'})"
            )
    if fields:
        run_services.run_update(call.principal, run, fields)
    if tags:
        run_services.tags_set(call.principal, run, tags)


@endpoint("POST")
def runs_log_metric(call: Call) -> dict:
    run = _run(call, _run_id(call), write=True)
    key, value, timestamp, step = protocol.check_metric(call.args.data)
    # The id makes a retried call, and an exact repeat of a point, a no-op, as MLflow's store does.
    batch_id = "mlflow-" + hashlib.sha1(f"{key}\x00{value!r}\x00{timestamp}\x00{step}".encode()).hexdigest()
    series = protocol.metric_series([(key, value, timestamp, step)])
    metrics.metrics_ingest(run, {"batch_id": batch_id, "series": series})
    return {}


@endpoint("POST")
def runs_log_param(call: Call) -> dict:
    run = _run(call, _run_id(call), write=True)
    key, value = protocol.check_param(call.args.data)
    _add_params(call, run, {key: value}, single=True)
    return {}


@endpoint("POST")
def runs_set_tag(call: Call) -> dict:
    run = _run(call, _run_id(call), write=True)
    key, value = protocol.check_tag(call.args.data)
    _set_tags(call, run, {key: value})
    return {}


@endpoint("POST")
def runs_delete_tag(call: Call) -> dict:
    run = _run(call, _run_id(call), write=True)
    key = call.args.string("key", required=True)
    if key == mapping.RUN_NAME_TAG and run.display_name:
        run_services.run_update(call.principal, run, {"display_name": ""})
    elif key == mapping.NOTE_TAG and run.description:
        run_services.run_update(call.principal, run, {"description": ""})
    elif key in run_services.tags_of(run):
        run_services.tags_remove(call.principal, run, [key])
    else:
        raise MlflowError(f"No tag with name: {key} in run with id {run.run_id}", RESOURCE_DOES_NOT_EXIST)
    return {}


@endpoint("POST")
def runs_log_batch(call: Call) -> dict:
    body = call.request.body
    run_id = _run_id(call)
    checked_metrics, checked_params, checked_tags = protocol.check_batch(
        len(body), call.args.objects("metrics"), call.args.objects("params"), call.args.objects("tags")
    )
    run = _run(call, run_id, write=True)
    with transaction.atomic():
        if checked_params:
            _add_params(call, run, dict(checked_params), single=False)
        if checked_metrics:
            batch_id = "mlflow-batch-" + hashlib.sha1(body).hexdigest()
            metrics.metrics_ingest(run, {"batch_id": batch_id, "series": protocol.metric_series(checked_metrics)})
        if checked_tags:
            _set_tags(call, run, dict(checked_tags))
    return {}


# --- metric history ---------------------------------------------------------------------------------------------


def _history(run: Run, key: str) -> list[dict]:
    """Every numeric point of a run's metric, ordered as MLflow orders history (time, then step)."""
    try:
        series = metrics.series_get(run, key)
    except NotFound:
        return []  # MLflow answers an empty history for a metric never logged
    if series.kind != MetricSeries.Kind.SCALAR:
        return []  # lists, tables and images are not MLflow metrics
    points = metrics.series_points(series)
    steps, times, values = points["steps"], points["times"], points["values"]
    out = []
    for i in np.lexsort((np.asarray(steps, dtype=np.int64), np.asarray(times, dtype=np.float64))).tolist():
        value = values[i]
        if isinstance(value, dict):
            value = value.get("$float")
        elif isinstance(value, bool | int | float):
            value = float(value)
        else:
            continue  # text and null points are not MLflow metrics
        out.append({"key": key, "value": value, "timestamp": round(times[i] * 1000), "step": steps[i]})
    return out


@endpoint("GET", "POST")
def metrics_get_history(call: Call) -> dict:
    run = _run(call, _run_id(call))
    key = call.args.string("metric_key", required=True)
    size = call.args.integer("max_results")
    if size is not None and size <= 0:
        raise MlflowError(f"Invalid value {size} for parameter 'max_results' supplied. It must be a positive integer.")
    offset = queries.page_offset(call.args.string("page_token"))
    history = _history(run, key)  # type: ignore[arg-type]
    if size is None:
        return {"metrics": history[offset:]}
    out: dict = {"metrics": history[offset : offset + size]}
    if len(history) > offset + size:
        out["next_page_token"] = queries.page_token(offset + size)
    return out


@endpoint("GET")
def metrics_get_history_bulk_interval(call: Call) -> dict:
    run_ids = call.args.strings("run_ids")
    if not run_ids:
        raise MlflowError("Missing value for required parameter 'run_ids'.")
    if len(run_ids) > HISTORY_BULK_MAX_RUNS:
        raise MlflowError(
            f"GetMetricHistoryBulkInterval request must specify at most {HISTORY_BULK_MAX_RUNS} run_ids. "
            f"Received {len(run_ids)} run_ids."
        )
    key = call.args.string("metric_key", required=True)
    size = call.args.integer("max_results", default=HISTORY_BULK_MAX_RESULTS)
    if size is None or not 1 <= size <= HISTORY_BULK_MAX_RESULTS:
        raise MlflowError(f"max_results must be between 1 and {HISTORY_BULK_MAX_RESULTS}.")
    start, end = call.args.integer("start_step"), call.args.integer("end_step")
    if (start is None) != (end is None):
        raise MlflowError("If either start step or end step are specified, both must be specified.")
    if start is not None and end is not None and start > end:
        raise MlflowError(f"end_step must be greater than start_step. Found start_step={start} and end_step={end}.")
    out = []
    for run_id in sorted(set(run_ids)):
        points = _history(_run(call, run_id), key)  # type: ignore[arg-type]
        if start is not None:
            points = [p for p in points if start <= p["step"] <= end]  # type: ignore[operator]
        if len(points) > size:
            # Evenly spaced samples that keep the first and the last point, as charts need both ends.
            keep = np.unique(np.linspace(0, len(points) - 1, size).round().astype(int)).tolist()
            points = [points[i] for i in keep]
        out.extend({**p, "run_id": run_id} for p in points)
    return {"metrics": out}


# --- artifacts -----------------------------------------------------------------------------------------------------


def _listing(run: Run, prefix: str) -> list[tuple[str, bool, int | None]]:
    """The files and folders directly under `prefix` ("" = the run's root) as (name, is_dir, size)."""
    base = f"{prefix}/" if prefix else ""
    entries: dict[str, tuple[bool, int | None]] = {}
    for record in files.file_list(run, base or None):
        rest = record.path[len(base) :]
        head, _, tail = rest.partition("/")
        entries[head] = (True, None) if tail else (False, record.size)
    return [(name, is_dir, size) for name, (is_dir, size) in sorted(entries.items())]


def _file_info(path: str, is_dir: bool, size: int | None) -> dict:
    return {"path": path, "is_dir": True} if is_dir else {"path": path, "is_dir": False, "file_size": size}


def _clean_prefix(raw: str | None) -> str:
    return (raw or "").strip("/")


@endpoint("GET")
def artifacts_list(call: Call) -> dict:
    run = _run(call, _run_id(call))
    prefix = _clean_prefix(call.args.string("path"))
    payload = queries.run_payload(run)["info"]
    return {
        "root_uri": payload["artifact_uri"],
        "files": [_file_info(f"{prefix}/{n}" if prefix else n, d, s) for n, d, s in _listing(run, prefix)],
    }


def _split_artifact_path(raw: str) -> tuple[str, str] | None:
    """`<experiment id>/<run id>/artifacts[/<path in the run>]` (a run's artifact URI) → (run id, path)."""
    parts = [p for p in raw.split("/") if p]
    if len(parts) < 3 or parts[2] != "artifacts":
        return None
    return parts[1], "/".join(parts[3:])


@endpoint("GET")
def artifacts_proxy_list(call: Call) -> dict:
    raw = call.args.string("path") or ""
    located = _split_artifact_path(raw)
    if located is None:
        return {"files": []}  # above a run's artifact root: nothing is stored there
    run = _run(call, located[0])
    return {"files": [_file_info(n, d, s) for n, d, s in _listing(run, located[1])]}


@endpoint("GET", "PUT")
def artifact(call: Call, artifact_path: str) -> dict | HttpResponse:
    located = _split_artifact_path(artifact_path)
    if located is None or not located[1]:
        raise MlflowError(
            f"artifact path '{artifact_path}' is not inside a run's artifact root "
            "(<experiment id>/<run id>/artifacts/<file>)",
            RESOURCE_DOES_NOT_EXIST,
        )
    run_id, name = located
    if call.request.method == "PUT":
        run = _run(call, run_id, write=True)
        try:
            files.file_upload(run, name, call.request)
        except Conflict as exc:
            raise MlflowError(exc.message, RESOURCE_ALREADY_EXISTS) from None
        return {}
    record, path = files.file_get(_run(call, run_id), name)
    return FileResponse(
        open(path, "rb"),
        as_attachment=True,
        filename=record.path.rsplit("/", 1)[-1],
        content_type=record.content_type or "application/octet-stream",
    )


@endpoint("POST", "GET")
def logged_models_search(call: Call) -> dict:
    """Run Studio keeps no logged models (mlflow.<flavor>.log_model), so a search finds none.

    The client searches them whenever it lists or downloads a run's artifacts.
    """
    for raw in call.args.strings("experiment_ids"):
        if raw != mapping.DEFAULT_EXPERIMENT_ID:
            _experiment(call, raw)
    return {"models": []}


# --- server info ------------------------------------------------------------------------------------------------------


@endpoint("GET", authenticated=False)
def server_info(call: Call) -> dict:
    """What the client probes before using workspaces (mlflow.set_workspace) and multipart artifacts."""
    return {
        "store_type": "SqlStore",
        "workspaces_enabled": True,
        "multipart_uploads_enabled": False,
        "multipart_downloads_enabled": False,
    }
