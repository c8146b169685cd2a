"""Reads that only the studio pages need: the runs table, live changes, charts, trees, search.

Visibility always starts from runs.selectors (runs_visible, experiments_visible,
workspaces_visible), so a page can never show what the API would hide.
Every function here runs a fixed, small number of queries whatever the size
of the experiment: the runs table pages with a keyset cursor (no OFFSET),
and live polling asks only about the rows a page shows.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from django.db.models import (
    Count,
    DateTimeField,
    DurationField,
    F,
    FilteredRelation,
    FloatField,
    Max,
    Q,
    QuerySet,
    Subquery,
    Value,
)
from django.db.models.functions import Coalesce
from django.utils import timezone

from runs import selectors
from runs.access import Principal
from runs.errors import InvalidInput, NotFound
from runs.forms import Chart, TableState, parse_pair
from runs.lifecycle import ACTIVE, Status
from runs.models import (
    Experiment,
    MetricEntry,
    MetricSeries,
    Run,
    RunEvent,
    RunProperty,
    RunTag,
    SavedView,
    Workspace,
)
from runs.presenters import format_duration, run_duration
from runs.services import metrics as metric_services

COUNT_CAP = 10_000  # counting past this costs a scan of the whole match; "10,000+" says enough
CHART_RUNS_MAX = 20
CHART_DEFAULT_RUNS = 10
CHART_POINTS_PER_TRACE = 2000
CHART_CACHE_MIN_POINTS = 20_000  # below this, reading the series costs less than caching it
CHART_CACHE_TTL = 600
PARALLEL_RUNS_MAX = 500
TREE_MAX = 500
KEYS_SAMPLE_RUNS = 500
CHOICES_TTL = 30
LIVE_IDS_MAX = 200

# --- workspaces and experiments ------------------------------------------------------------------


def experiment_for_page(principal: Principal, workspace_name: str, experiment_name: str) -> Experiment:
    """The experiment with its workspace, in one query. Raises NotFound for non-members too."""
    experiment = (
        selectors.experiments_visible(principal)
        .select_related("workspace")
        .filter(workspace__name=workspace_name, name=experiment_name)
        .first()
    )
    if experiment is None:
        raise NotFound(f"experiment '{experiment_name}' does not exist in workspace '{workspace_name}'")
    return experiment


def experiments_list(principal: Principal, workspace: Workspace, q: str = "") -> QuerySet[Experiment]:
    """Experiments of a workspace with top-level run counts and active runs, latest activity first."""
    experiments = selectors.experiments_visible(principal).filter(workspace=workspace)
    if q:
        experiments = experiments.filter(name__icontains=q)
    live = Q(runs__deleted_at__isnull=True)
    return experiments.annotate(
        run_count=Count("runs", filter=live & Q(runs__parent__isnull=True)),
        active_count=Count("runs", filter=live & Q(runs__status__in=ACTIVE)),
    ).order_by("-last_activity_at", "name")


def workspace_summary(principal: Principal, workspace: Workspace) -> dict:
    """Compute targets with their active runs, and the workspace's active run count."""
    active = selectors.runs_visible(principal).filter(experiment__workspace=workspace, status__in=ACTIVE)
    per_target = dict(active.values_list("compute_target").annotate(n=Count("pk")).order_by())
    targets = list(selectors.compute_targets(principal, workspace))
    for target in targets:
        target.active_runs = per_target.get(target.name, 0)
    return {"targets": targets, "active_runs": sum(per_target.values())}


# --- the runs table ------------------------------------------------------------------------------


@dataclass
class Cell:
    kind: str
    value: object = None
    extra: object = None


@dataclass
class RunsPage:
    rows: list[Run]
    next_query: str | None
    prev_query: str | None
    total: int
    total_capped: bool
    active_pks: list[int]
    since: int
    first_page_top: int | None


def _encode_cursor(value, number: int) -> str:
    if isinstance(value, datetime):
        packed = ["t", value.isoformat(), number]
    elif isinstance(value, timedelta):
        packed = ["d", int(value / timedelta(microseconds=1)), number]
    else:
        packed = ["v", value, number]
    return base64.urlsafe_b64encode(json.dumps(packed, separators=(",", ":")).encode()).decode().rstrip("=")


def _decode_cursor(raw: str):
    try:
        kind, value, number = json.loads(base64.urlsafe_b64decode(raw.encode() + b"==").decode())
        if kind == "t":
            value = datetime.fromisoformat(value)
        elif kind == "d":
            value = timedelta(microseconds=int(value))
        elif kind != "v" or not isinstance(value, str | int | float | type(None)):
            raise ValueError
        if isinstance(value, str) and ("\x00" in value or any("\ud800" <= ch <= "\udfff" for ch in value)):
            raise ValueError  # no stored value holds these, and PostgreSQL refuses to compare them
        return value, int(number)
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise InvalidInput("this page link is out of date; start again from the first page") from None


NULL_METRIC = -1.0e308  # sorts runs without the metric after every real value


def _sort_expression(key: str, now: datetime):
    if key == "number":
        return F("number")
    if key == "name":
        return F("display_name")
    if key == "status":
        return F("status")
    if key == "target":
        return F("compute_target")
    if key == "created":
        return F("created_at")
    if key == "submitter":
        return Coalesce(F("submitted_by__username"), Value(""))
    if key == "started":
        return Coalesce(F("started_at"), F("created_at"))
    if key == "duration":
        end = Coalesce(F("ended_at"), Value(now), output_field=DateTimeField())
        start = Coalesce(F("started_at"), Value(now), output_field=DateTimeField())
        return Coalesce(end - start, Value(timedelta(0)), output_field=DurationField())
    # A metric's last value, through the LEFT JOIN that _annotate_sort sets up.
    return Coalesce(F("_metric__last_value"), Value(NULL_METRIC), output_field=FloatField())


def _annotate_sort(runs: QuerySet[Run], key: str, now: datetime) -> QuerySet[Run]:
    if key.startswith("m:"):
        # One LEFT JOIN rather than a subquery per run: PostgreSQL sorts 100,000 runs by a
        # metric in a quarter of the time.
        runs = runs.annotate(_metric=FilteredRelation("metric_series", condition=Q(metric_series__name=key[2:])))
    return runs.annotate(_sort=_sort_expression(key, now))


def filtered_runs(principal: Principal, experiment: Experiment, state: TableState) -> QuerySet[Run]:
    """The experiment's runs matching the state's filters (no ordering, no paging).

    Tag and property filters go through runs.selectors.filter_runs, so they mean
    what they mean in the API and the SDK (a bare key: present; key=value: equal).
    """
    runs = selectors.runs_visible(principal).filter(experiment=experiment)
    if not state.children:
        runs = runs.filter(parent__isnull=True)
    for pairs, what in ((state.tags, "tags"), (state.props, "properties")):
        for key, value in pairs:
            runs = selectors.filter_runs(runs, **{what: key if value is None else {key: value}})
    if state.q:
        runs = runs.filter(selectors.text_match(state.q, experiment_name=False))
    return selectors.filter_runs(
        runs,
        status=list(state.status) or None,
        submitted_by=state.submitter or None,
        compute_target=state.target or None,
    )


def _table_rows(runs: QuerySet[Run], state: TableState) -> QuerySet[Run]:
    """What the table shows, and nothing more: no run definitions or errors, tags only if a column needs them."""
    runs = runs.select_related("submitted_by").defer("error", "warnings", "run_definition")
    if "tags" in state.cols or state.column_names("t"):
        runs = runs.prefetch_related("tag_set")
    if state.column_names("p"):
        runs = runs.prefetch_related("property_set")
    return runs


def runs_page(principal: Principal, experiment: Experiment, state: TableState, *, count: bool = True) -> RunsPage:
    """One page of the runs table, keyset-paged on (sort value, run number).

    The total is exact up to COUNT_CAP; `count=False` skips it (charts need only the rows).
    """
    now = timezone.now()
    since = int(now.timestamp() * 1_000_000)
    runs = filtered_runs(principal, experiment, state)
    key, desc = state.sort_key, state.descending
    runs_sorted = _annotate_sort(runs, key, now) if key != "number" else runs
    backward = bool(state.before)
    cursor = state.before or state.after
    if cursor:
        value, number = _decode_cursor(cursor)
        later = desc != backward  # walking towards smaller values?
        op = "lt" if later else "gt"
        if key == "number":
            runs_sorted = runs_sorted.filter(**{f"number__{op}": number})
        else:
            runs_sorted = runs_sorted.filter(
                Q(**{f"_sort__{op}": value}) | Q(**{"_sort": value, f"number__{op}": number})
            )
    walk_desc = desc != backward
    if key == "number":
        order = ["-number"] if walk_desc else ["number"]
    else:
        order = [F("_sort").desc(), "-number"] if walk_desc else [F("_sort").asc(), "number"]
    fetched = list(_table_rows(runs_sorted.order_by(*order), state)[: state.size + 1])
    more = len(fetched) > state.size
    rows = fetched[: state.size]
    if backward:
        rows.reverse()
    has_next = more if not backward else True
    has_prev = bool(state.after) if not backward else more

    def cursor_of(run: Run) -> str:
        return _encode_cursor(getattr(run, "_sort", run.number), run.number)

    next_query = state.with_(after=cursor_of(rows[-1]), before="").to_query() if rows and has_next else None
    prev_query = None
    if rows and has_prev:
        prev_query = state.with_(after="", before=cursor_of(rows[0])).to_query()
    if (state.is_first_page and not more) or not count:
        counted = len(rows)  # the whole match is on this page (or nobody asked): no need to count
    else:
        counted = filtered_runs(principal, experiment, state).order_by()[: COUNT_CAP + 1].count()
    decorate_rows(rows, state, now)
    return RunsPage(
        rows=rows,
        next_query=next_query,
        prev_query=prev_query,
        total=min(counted, COUNT_CAP),
        total_capped=counted > COUNT_CAP,
        active_pks=[r.pk for r in rows if r.status in ACTIVE],
        since=since,
        first_page_top=rows[0].number if rows and state.is_first_page and state.sort == "-number" else None,
    )


def decorate_rows(rows: list[Run], state: TableState, now: datetime | None = None) -> None:
    """Attach the cells of the state's columns to each run (one query for metric columns)."""
    now = now or timezone.now()
    metric_names = state.column_names("m")
    metric_values: dict[tuple[int, str], object] = {}
    if metric_names and rows:
        for run_id, name, value, value_json in MetricSeries.objects.filter(
            run_id__in=[r.pk for r in rows], name__in=metric_names
        ).values_list("run_id", "name", "last_value", "last_value_json"):
            metric_values[(run_id, name)] = value if value is not None else value_json
    needs_tags = "tags" in state.cols or bool(state.column_names("t"))
    needs_props = bool(state.column_names("p"))
    for run in rows:
        tags = sorted(run.tag_set.all(), key=lambda t: t.pk) if needs_tags else []
        props = {p.key: p.value for p in run.property_set.all()} if needs_props else {}
        tag_map = {t.key: t.value for t in tags}
        run.tag_pairs = [(t.key, t.value) for t in tags]
        run.is_active = run.status in ACTIVE
        cells = []
        for col in state.cols:
            if col.startswith("m:"):
                cells.append(Cell("metric", metric_display(metric_values.get((run.pk, col[2:])))))
            elif col.startswith("p:"):
                cells.append(Cell("prop", props.get(col[2:]), col[2:] in props))
            elif col.startswith("t:"):
                cells.append(Cell("tag", tag_map.get(col[2:]), col[2:] in tag_map))
            else:
                cells.append(Cell(col))
        run.cells = cells


def metric_display(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return f"{value:.6g}"
    if isinstance(value, dict) and "$float" in value:
        return str(value["$float"])
    return str(value)


def selection(principal: Principal, experiment: Experiment, numbers: tuple[int, ...]) -> tuple[list[Run], list[dict]]:
    """The selected runs that still exist, and what is missing (deleted, or never existed)."""
    if not numbers:
        return [], []
    found = list(
        selectors.runs_visible(principal)
        .filter(experiment=experiment, number__in=numbers)
        .select_related("submitted_by")
        .order_by("number")
    )
    have = {r.number for r in found}
    missing_numbers = [n for n in numbers if n not in have]
    missing = []
    if missing_numbers:
        deleted = set(
            selectors.runs_visible(principal, include_deleted=True)
            .filter(experiment=experiment, number__in=missing_numbers, deleted_at__isnull=False)
            .values_list("number", flat=True)
        )
        missing = [{"number": n, "why": "deleted" if n in deleted else "no longer exists"} for n in missing_numbers]
    return found, missing


def counts(principal: Principal, experiment: Experiment) -> dict:
    """Active runs of the experiment and the compute targets they occupy (index on experiment, status)."""
    per_target = dict(
        selectors.runs_visible(principal)
        .filter(experiment=experiment, status__in=ACTIVE)
        .values_list("compute_target")
        .annotate(n=Count("pk"))
        .order_by()
    )
    return {"active_runs": sum(per_target.values()), "active_targets": len(per_target)}


def column_choices(experiment: Experiment) -> dict[str, list[str]]:
    """Metric names, property keys and tag keys seen in the newest runs (offered as columns and filters).

    Cached for CHOICES_TTL seconds per experiment: a name logged for the first
    time shows up in the column chooser that much later, and a page load does
    not pay three scans of the newest runs.
    """
    from django.core.cache import cache

    key = f"studio:choices:{experiment.pk}:{experiment.created_at.timestamp()}"
    cached = cache.get(key)
    if cached is not None:
        return cached
    newest = Subquery(
        Run.objects.filter(experiment=experiment, deleted_at__isnull=True)
        .order_by("-number")
        .values("pk")[:KEYS_SAMPLE_RUNS]
    )
    choices = {
        "metrics": _distinct(MetricSeries.objects.filter(run_id__in=newest, kind=MetricSeries.Kind.SCALAR), "name"),
        "properties": _distinct(RunProperty.objects.filter(run_id__in=newest), "key"),
        "tags": _distinct(RunTag.objects.filter(run_id__in=newest), "key"),
    }
    cache.set(key, choices, CHOICES_TTL)
    return choices


def _distinct(queryset: QuerySet, field_name: str) -> list[str]:
    return list(queryset.order_by(field_name).values_list(field_name, flat=True).distinct()[:200])


# --- live updates --------------------------------------------------------------------------------


def parse_since(raw: str | None) -> datetime:
    try:
        micros = int(raw or "")
    except ValueError:
        raise InvalidInput("since must be the integer the page was given") from None
    return datetime.fromtimestamp(micros / 1_000_000, tz=UTC)


def parse_ids(raw: str | None) -> list[int]:
    return [int(p) for p in (raw or "").split(",")[:LIVE_IDS_MAX] if p.isdigit()]


def live_rows(
    principal: Principal, experiment: Experiment, pks: list[int], since: datetime, metric_names: list[str]
) -> list[int]:
    """Of the rows a page shows, those whose status (or shown metrics) changed after `since`."""
    if not pks:
        return []
    changed = set(
        selectors.runs_visible(principal)
        .filter(experiment=experiment, pk__in=pks, status_changed_at__gt=since)
        .values_list("pk", flat=True)
    )
    if metric_names:
        changed |= set(
            MetricSeries.objects.filter(run_id__in=pks, name__in=metric_names, updated_at__gt=since).values_list(
                "run_id", flat=True
            )
        )
    return sorted(changed)


def rows_by_pk(principal: Principal, experiment: Experiment, pks: list[int], state: TableState) -> list[Run]:
    rows = list(_table_rows(selectors.runs_visible(principal).filter(experiment=experiment, pk__in=pks), state))
    decorate_rows(rows, state)
    return rows


# --- charts --------------------------------------------------------------------------------------


def _wire_to_float(value) -> float | None:
    if isinstance(value, dict) or value is None or isinstance(value, str):
        return None  # NaN/inf and text values leave gaps in a chart
    return float(value)


def _run_label(run: Run) -> str:
    return f"#{run.number} {run.display_name}".strip()


def chart_runs(principal: Principal, experiment: Experiment, state: TableState) -> tuple[list[Run], bool]:
    """The runs a chart compares: the selection, else the first rows of the table. Returns (runs, is_default)."""
    if state.sel:
        found, _missing = selection(principal, experiment, state.sel)
        return found[:CHART_RUNS_MAX], False
    page = runs_page(principal, experiment, state.with_(size=25) if state.size > 25 else state, count=False)
    return page.rows[:CHART_DEFAULT_RUNS], True


def chart_figure(principal: Principal, experiment: Experiment, state: TableState, chart: Chart) -> dict:
    """A plotly figure (data + layout) for one chart of a custom view, downsampled on the server."""
    if chart.kind == "par":
        if state.sel:
            runs, _ = chart_runs(principal, experiment, state)
        else:
            runs = list(
                filtered_runs(principal, experiment, state)
                .select_related("submitted_by")
                .order_by("-number")[:PARALLEL_RUNS_MAX]
            )
        figure = parallel_figure(runs, chart)
        figure["default_runs"] = not state.sel
        return figure
    runs, default = chart_runs(principal, experiment, state)
    figure = line_figure(runs, chart) if chart.kind == "line" else bar_figure(runs, chart)
    figure["default_runs"] = default
    return figure


def chart_points(series: MetricSeries, x: str) -> dict:
    """A series downsampled for a chart (runs.services.metrics.series_points), cached when large.

    Points are only ever appended, and every append changes the series' count
    and updated_at, so a cached answer is never stale: a finished run's
    million-point metric is read once per web process, then drawn from memory.
    """
    from django.core.cache import cache

    if series.count < CHART_CACHE_MIN_POINTS:
        return metric_services.series_points(series, x=x, max_points=CHART_POINTS_PER_TRACE)
    key = f"studio:points:{series.pk}:{series.count}:{series.updated_at.timestamp()}:{x}:{CHART_POINTS_PER_TRACE}"
    points = cache.get(key)
    if points is None:
        points = metric_services.series_points(series, x=x, max_points=CHART_POINTS_PER_TRACE)
        cache.set(key, points, CHART_CACHE_TTL)
    return points


def line_figure(runs: list[Run], chart: Chart) -> dict:
    series = {
        s.run_id: s
        for s in MetricSeries.objects.filter(run__in=runs, name=chart.metric, kind=MetricSeries.Kind.SCALAR).defer(
            "last_value_json"
        )
    }
    traces, total_points, downsampled = [], 0, False
    for run in runs:
        s = series.get(run.pk)
        if s is None:
            continue
        points = chart_points(s, chart.x)
        xs = points["x"] if chart.x == "step" else [t * 1000.0 for t in points["x"]]
        traces.append(
            {
                "type": "scatter",
                "mode": "lines" if len(xs) > 1 else "markers",
                "name": _run_label(run),
                "x": xs,
                "y": [_wire_to_float(v) for v in points["values"]],
            }
        )
        total_points += points["total"]
        downsampled = downsampled or points["downsampled"]
    layout = {
        "xaxis": {"title": {"text": "step" if chart.x == "step" else "time (UTC)"}},
        "yaxis": {"title": {"text": chart.metric}},
    }
    if chart.x == "time":
        layout["xaxis"]["type"] = "date"
    return {
        "data": traces,
        "layout": layout,
        "missing": [_run_label(r) for r in runs if r.pk not in series],
        "points": total_points,
        "downsampled": downsampled,
    }


def bar_figure(runs: list[Run], chart: Chart) -> dict:
    last = dict(MetricSeries.objects.filter(run__in=runs, name=chart.metric).values_list("run_id", "last_value"))
    shown = [r for r in runs if last.get(r.pk) is not None]
    return {
        "data": [
            {
                "type": "bar",
                "x": [_run_label(r) for r in shown],
                "y": [last[r.pk] for r in shown],
                "marker": {"color": "#2f6fb0"},
            }
        ],
        "layout": {
            "yaxis": {"title": {"text": f"{chart.metric} (last value)"}, "automargin": True},
            "xaxis": {"type": "category", "automargin": True},
        },
        "missing": [_run_label(r) for r in runs if last.get(r.pk) is None],
        "points": len(shown),
        "downsampled": False,
    }


def parallel_figure(runs: list[Run], chart: Chart) -> dict:

    pks = [r.pk for r in runs]
    prop_keys = [d[2:] for d in chart.dims if d.startswith("p:")]
    tag_keys = [d[2:] for d in chart.dims if d.startswith("t:")]
    values: dict[str, dict[int, str | None]] = {d: {} for d in chart.dims}
    for run_id, key, value in RunProperty.objects.filter(run_id__in=pks, key__in=prop_keys).values_list(
        "run_id", "key", "value"
    ):
        values[f"p:{key}"][run_id] = value
    for run_id, key, value in RunTag.objects.filter(run_id__in=pks, key__in=tag_keys).values_list(
        "run_id", "key", "value"
    ):
        values[f"t:{key}"][run_id] = value
    last = dict(
        MetricSeries.objects.filter(run_id__in=pks, name=chart.metric, last_value__isnull=False).values_list(
            "run_id", "last_value"
        )
    )
    shown = [pk for pk in pks if pk in last]
    dimensions = []
    for dim in chart.dims:
        column = [values[dim].get(pk) for pk in shown]
        numbers = [_as_number(v) for v in column]
        if column and all(n is not None for n in numbers):
            dimensions.append({"label": dim[2:], "values": numbers})
        else:
            categories = sorted({v if v is not None else "(none)" for v in column})
            index = {c: i for i, c in enumerate(categories)}
            dimensions.append(
                {
                    "label": dim[2:],
                    "values": [index[v if v is not None else "(none)"] for v in column],
                    "tickvals": list(range(len(categories))),
                    "ticktext": categories,
                }
            )
    metric_values = [last[pk] for pk in shown]
    dimensions.append({"label": chart.metric, "values": metric_values})
    return {
        "data": [
            {
                "type": "parcoords",
                "line": {"color": metric_values, "colorscale": "Viridis", "showscale": True},
                "dimensions": dimensions,
            }
        ],
        "layout": {"margin": {"l": 70, "r": 60, "t": 50, "b": 30}},
        "missing": [f"{len(pks) - len(shown)} runs have no value for {chart.metric}"] if len(shown) < len(pks) else [],
        "points": len(shown),
        "downsampled": False,
    }


def _as_number(value) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def metric_figure(run: Run, series: MetricSeries, x: str = "step") -> dict:
    """One run's scalar metric as a plotly figure, downsampled to CHART_POINTS_PER_TRACE."""
    points = chart_points(series, x)
    xs = points["x"] if x == "step" else [t * 1000.0 for t in points["x"]]
    layout = {
        "xaxis": {"title": {"text": "step" if x == "step" else "time (UTC)"}},
        "yaxis": {"title": {"text": series.name}},
    }
    if x == "time":
        layout["xaxis"]["type"] = "date"
    return {
        "data": [
            {
                "type": "scatter",
                "mode": "lines" if len(xs) > 1 else "markers",
                "name": series.name,
                "x": xs,
                "y": [_wire_to_float(v) for v in points["values"]],
            }
        ],
        "layout": layout,
        "points": points["total"],
        "downsampled": points["downsampled"],
        "missing": [],
    }


# --- one run -------------------------------------------------------------------------------------


def run_for_page(principal: Principal, run_id: str) -> Run:
    run = (
        selectors.with_labels(selectors.runs_visible(principal).filter(run_id=run_id))
        .select_related("snapshot")
        .first()
    )
    if run is None:
        raise NotFound(f"run '{run_id}' does not exist or is not visible to you")
    return run


@dataclass
class TreeNode:
    run: Run
    children: list[TreeNode] = field(default_factory=list)


def run_tree(principal: Principal, run: Run) -> tuple[list[TreeNode], int]:
    """The run's descendants as a tree (at most TREE_MAX), and how many there are in all."""
    descendants = selectors.run_children(principal, run, recursive=True)
    nodes = list(
        descendants.only(
            "pk", "run_id", "number", "display_name", "status", "parent_id", "started_at", "ended_at"
        ).order_by("depth", "number")[:TREE_MAX]
    )
    total = len(nodes) if len(nodes) < TREE_MAX else descendants.count()
    by_pk = {run.pk: TreeNode(run)}
    for node in nodes:
        by_pk[node.pk] = TreeNode(node)
    for node in nodes:
        parent = by_pk.get(node.parent_id)
        if parent is not None:
            parent.children.append(by_pk[node.pk])
    return by_pk[run.pk].children, total


def run_events(run: Run) -> list[RunEvent]:
    return list(RunEvent.objects.filter(run=run).select_related("actor"))


@dataclass
class RunMetrics:
    scalars: list[MetricSeries]
    tables: list[tuple[MetricSeries, list[str], list[list]]]
    lists: list[tuple[MetricSeries, list]]
    images: list[tuple[MetricSeries, list[dict]]]


ENTRIES_SHOWN = 200


def run_metrics(run: Run) -> RunMetrics:
    """A run's metrics grouped for display; tables and lists keep their first ENTRIES_SHOWN rows."""
    series = list(MetricSeries.objects.filter(run=run).order_by("name"))
    scalars = [s for s in series if s.kind == MetricSeries.Kind.SCALAR]
    tables, lists, images = [], [], []
    for s in series:
        if s.kind == MetricSeries.Kind.SCALAR:
            continue
        entries = list(
            MetricEntry.objects.filter(series=s).order_by("seq").values_list("value", flat=True)[:ENTRIES_SHOWN]
        )
        if s.kind == MetricSeries.Kind.IMAGE:
            images.append((s, [e for e in entries if isinstance(e, dict)]))
        elif s.kind == MetricSeries.Kind.LIST:
            lists.append((s, entries))
        else:
            table = metric_services._aggregate_entries(s.kind, entries)
            if isinstance(table, dict) and table and all(isinstance(v, list) for v in table.values()):
                columns = list(table)
                height = max(len(v) for v in table.values())
                rows = [[table[c][i] if i < len(table[c]) else "" for c in columns] for i in range(height)]
            else:
                columns = list(table) if isinstance(table, dict) else []
                rows = [list(table.values())] if isinstance(table, dict) else []
            tables.append((s, columns, rows[:ENTRIES_SHOWN]))
    return RunMetrics(scalars=scalars, tables=tables, lists=lists, images=images)


# --- search --------------------------------------------------------------------------------------

SEARCH_FIELDS = ("tag", "prop", "status", "experiment", "submitter", "workspace")


@dataclass
class SearchQuery:
    text: str = ""
    tags: list[tuple[str, str | None]] = field(default_factory=list)
    props: list[tuple[str, str | None]] = field(default_factory=list)
    status: list[str] = field(default_factory=list)
    experiment: str = ""
    submitter: str = ""
    workspace: str = ""

    @classmethod
    def parse(cls, raw: str) -> SearchQuery:
        """'tag:quality=great status:Running lr' → fields plus free text, like the pipelines search bar."""
        import shlex

        query = cls()
        try:
            words = shlex.split(raw)
        except ValueError:
            words = raw.split()
        text = []
        for word in words:
            name, colon, value = word.partition(":")
            if colon and name in SEARCH_FIELDS and value:
                if name == "tag":
                    query.tags.append(parse_pair(value))
                elif name == "prop":
                    query.props.append(parse_pair(value))
                elif name == "status":
                    query.status += [s for s in Status.values if s.lower() == value.lower()] or [value]
                else:
                    setattr(query, name, value)
            else:
                text.append(word)
        query.text = " ".join(text)[:200]
        return query


def search_runs(
    principal: Principal, raw: str, *, after: int | None = None, size: int = 50
) -> tuple[list[Run], int | None]:
    """Runs in the user's workspaces matching the search bar, newest first. Returns (runs, next cursor)."""
    query = SearchQuery.parse(raw)
    runs = selectors.runs_visible(principal)
    if query.workspace:
        runs = runs.filter(experiment__workspace__name=query.workspace)
    if query.experiment:
        runs = runs.filter(experiment__name__icontains=query.experiment)
    for key, value in query.tags:
        runs = selectors.filter_runs(runs, tags=key if value is None else {key: value})
    for key, value in query.props:
        runs = selectors.filter_runs(runs, properties=key if value is None else {key: value})
    runs = selectors.filter_runs(
        runs, status=query.status or None, submitted_by=query.submitter or None, text=query.text or None
    )
    if after is not None:
        runs = runs.filter(pk__lt=after)
    found = list(selectors.with_labels(runs.order_by("-pk"))[: size + 1])
    more = len(found) > size
    found = found[:size]
    now = timezone.now()
    for run in found:
        run.duration_text = format_duration(run_duration(run, now))
        run.tag_pairs = [(t.key, t.value) for t in sorted(run.tag_set.all(), key=lambda t: t.pk)]
        run.is_active = run.status in ACTIVE
    return found, (found[-1].pk if more and found else None)


# --- saved views ---------------------------------------------------------------------------------


def saved_views_visible(principal: Principal) -> QuerySet[SavedView]:
    return SavedView.objects.filter(workspace__in=selectors.workspaces_visible(principal))


def saved_views_of(principal: Principal, experiment: Experiment) -> QuerySet[SavedView]:
    return saved_views_visible(principal).filter(experiment=experiment).select_related("updated_by")


def saved_view_get(principal: Principal, experiment: Experiment, pk: int) -> SavedView:
    view = saved_views_of(principal, experiment).filter(pk=pk).first()
    if view is None:
        raise NotFound(f"saved view {pk} does not exist in experiment '{experiment.name}'")
    return view


def workspace_saved_views(principal: Principal, workspace: Workspace) -> QuerySet[SavedView]:
    return (
        saved_views_visible(principal)
        .filter(workspace=workspace)
        .select_related("experiment", "updated_by")
        .order_by("experiment__name", "name")
    )


def last_activity(experiment: Experiment):
    return Run.objects.filter(experiment=experiment).aggregate(at=Max("status_changed_at"))["at"]


# --- logs and files ------------------------------------------------------------------------------

TEXT_VIEW_MAX = 2 * 1024 * 1024


def decode_log(data: bytes, *, at_start: bool) -> tuple[str, int, int]:
    """Text of log bytes cut at UTF-8 character boundaries: (text, bytes skipped at start, bytes used).

    A read that starts inside a character skips its tail; a character split
    across two appends is left for the next read, so no reader ever shows a
    replacement character that is not in the log.
    """
    skip = 0
    if not at_start:
        while skip < min(3, len(data)) and (data[skip] & 0xC0) == 0x80:
            skip += 1
    end = len(data)
    for back in range(1, min(4, end - skip) + 1):
        byte = data[end - back]
        if byte & 0x80 == 0:
            break
        if byte & 0xC0 == 0xC0:
            needed = 4 if byte >= 0xF0 else 3 if byte >= 0xE0 else 2
            if back < needed:
                end -= back
            break
    return data[skip:end].decode("utf-8", errors="replace"), skip, end


def as_text(data: bytes) -> str | None:
    """The bytes as text, or None for binary content."""
    if b"\x00" in data[:8192]:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def snapshot_member(run: Run, name: str) -> tuple[str, bytes | None]:
    """One file of a run's snapshot: (name, bytes), bytes None when larger than TEXT_VIEW_MAX."""
    import zipfile

    from runs.paths import clean_relative_path
    from runs.services import execution

    if run.snapshot is None:
        raise NotFound(f"run {run.run_id} has no snapshot")
    with zipfile.ZipFile(execution.snapshot_path(run.snapshot.sha256)) as archive:
        for info in archive.infolist():
            if info.is_dir():
                continue
            try:
                member = clean_relative_path(info.filename, "snapshot entry")
            except InvalidInput:
                continue
            if member == name:
                if info.file_size > TEXT_VIEW_MAX:
                    return name, None
                return name, archive.read(info)
    raise NotFound(f"the snapshot has no file named '{name[:80]}'")
