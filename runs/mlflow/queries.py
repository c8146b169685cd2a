"""MLflow searches as ORM queries, evaluated in the database.

Filters become EXISTS subqueries on the tag, property and metric-series tables
(each uses its (run, key) unique index), order_by terms become correlated
subqueries or columns, and a page of runs is rendered with four queries
however many runs it holds. The runs searched always come from
runs.selectors (visibility); nothing here decides who sees what.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections import defaultdict
from collections.abc import Sequence
from datetime import timedelta

import orjson
from django.db.models import (
    BooleanField,
    Case,
    CharField,
    Exists,
    ExpressionWrapper,
    F,
    Lookup,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Value,
    When,
)
from django.db.models.functions import Cast, Coalesce, Concat, NullIf
from django.db.models.lookups import Exact, In

from runs.mlflow import mapping, search
from runs.mlflow.errors import MlflowError
from runs.models import Experiment, MetricSeries, Run, RunProperty, RunTag

SCALAR = MetricSeries.Kind.SCALAR


# --- LIKE with MLflow's case rules on every database ----------------------------------------------------


def _glob(pattern: str) -> str:
    """A LIKE pattern as an SQLite GLOB pattern (GLOB is case-sensitive, as MLflow's LIKE is)."""
    out = []
    for ch in pattern:
        if ch == "%":
            out.append("*")
        elif ch == "_":
            out.append("?")
        elif ch in "*?[":
            out.append(f"[{ch}]")
        else:
            out.append(ch)
    return "".join(out)


class Like(Lookup):
    """Case-sensitive LIKE; SQLite's own LIKE ignores case, so it becomes GLOB there."""

    lookup_name = "mlflow_like"

    def as_sql(self, compiler, connection):
        lhs, lhs_params = self.process_lhs(compiler, connection)
        rhs, rhs_params = self.process_rhs(compiler, connection)
        if connection.vendor == "sqlite":
            return f"{lhs} GLOB {rhs}", [*lhs_params, *[_glob(p) for p in rhs_params]]
        return f"{lhs} LIKE {rhs}", [*lhs_params, *rhs_params]


class ILike(Lookup):
    lookup_name = "mlflow_ilike"

    def as_sql(self, compiler, connection):
        lhs, lhs_params = self.process_lhs(compiler, connection)
        rhs, rhs_params = self.process_rhs(compiler, connection)
        if connection.vendor == "postgresql":
            return f"{lhs} ILIKE {rhs}", [*lhs_params, *rhs_params]
        return f"UPPER({lhs}) LIKE UPPER({rhs})", [*lhs_params, *rhs_params]


def _like_regex(pattern: str, *, ignore_case: bool) -> re.Pattern:
    regex = re.escape(pattern).replace("%", ".*").replace("_", ".")
    return re.compile(f"^{regex}$", re.IGNORECASE | re.DOTALL if ignore_case else re.DOTALL)


def _python_match(candidate: str, comparator: str, value: object) -> bool:
    """Compare a value from a small closed set (statuses, lifecycle stages) as the database would."""
    if comparator == "=":
        return candidate == value
    if comparator == "!=":
        return candidate != value
    if comparator in ("LIKE", "ILIKE"):
        return bool(_like_regex(str(value), ignore_case=comparator == "ILIKE").match(candidate))
    if comparator == "IN":
        return candidate in value  # type: ignore[operator]
    return candidate not in value  # type: ignore[operator]  # NOT IN


def _string_q(expression, comparator: str, value: object) -> Q:
    expr = F(expression) if isinstance(expression, str) else expression
    if comparator == "=":
        return Q(Exact(expr, value))
    if comparator == "!=":
        return ~Q(Exact(expr, value))
    if comparator == "LIKE":
        return Q(Like(expr, value))
    if comparator == "ILIKE":
        return Q(ILike(expr, value))
    if comparator == "IN":
        return Q(In(expr, list(value)))  # type: ignore[arg-type]
    if comparator == "NOT IN":
        return ~Q(In(expr, list(value)))  # type: ignore[arg-type]
    raise MlflowError(f"Invalid comparator '{comparator}'")


def _number_q(field: str, comparator: str, value: float) -> Q:
    if comparator == "!=":
        return Q(**{f"{field}__isnull": False}) & ~Q(**{field: value})
    lookup = {"=": "exact", ">": "gt", ">=": "gte", "<": "lt", "<=": "lte"}[comparator]
    return Q(**{f"{field}__{lookup}": value})


def _time_q(field: str, comparator: str, millis: float) -> Q:
    """Compare a timestamp column with epoch milliseconds as MLflow's whole-millisecond times compare."""
    start = mapping.from_ms(int(millis // 1))
    end = start + timedelta(milliseconds=1)
    exact = millis == int(millis)
    if comparator == "=":
        return Q(**{f"{field}__gte": start, f"{field}__lt": end}) if exact else Q(pk__in=[])
    if comparator == "!=":
        return ~_time_q(field, "=", millis) & Q(**{f"{field}__isnull": False})
    if comparator == ">":
        return Q(**{f"{field}__gte": end})
    if comparator == ">=":
        return Q(**{f"{field}__gte": start if exact else end})
    if comparator == "<":
        return Q(**{f"{field}__lt": start if exact else end})
    return Q(**{f"{field}__lt": end})  # <=


# --- runs ---------------------------------------------------------------------------------------------------

_STATUS_NAME = Case(
    *[When(status=ours, then=Value(theirs)) for ours, theirs in mapping.TO_MLFLOW_STATUS.items()],
    default=Value(mapping.RUNNING),
    output_field=CharField(),
)


def annotate_runs(
    runs: QuerySet[Run], clauses: Sequence[search.Clause] = (), order_by: Sequence[search.OrderBy] = ()
) -> QuerySet[Run]:
    """Add the MLflow views of run attributes that are not plain columns, those the search uses."""
    used = {c.key for c in clauses if c.type == search.ATTRIBUTE} | {
        o.key for o in order_by if o.type == search.ATTRIBUTE
    }
    extra = {}
    if "run_name" in used:
        extra["mlflow_name"] = Coalesce(NullIf("display_name", Value("")), "run_id", output_field=CharField())
    if "user_id" in used:
        extra["mlflow_user"] = Coalesce("submitted_by__username", Value(""), output_field=CharField())
    if "artifact_uri" in used:
        exp_id = Case(
            When(experiment__name=mapping.DEFAULT_EXPERIMENT_NAME, then=Value(mapping.DEFAULT_EXPERIMENT_ID)),
            default=Cast("experiment_id", output_field=CharField()),
            output_field=CharField(),
        )
        extra["mlflow_artifact_uri"] = Concat(
            Value("mlflow-artifacts:/"), exp_id, Value("/"), "run_id", Value("/artifacts"), output_field=CharField()
        )
    # The start time is always needed: it is the default order.
    return runs.annotate(mlflow_start=Coalesce("started_at", "created_at"), **extra)


_ATTRIBUTE_FIELDS = {
    "run_id": "run_id",
    "run_name": "mlflow_name",
    "user_id": "mlflow_user",
    "artifact_uri": "mlflow_artifact_uri",
}
# MLflow tags that are run fields here (see runs.mlflow.mapping).
_TAG_FIELDS = {mapping.RUN_NAME_TAG: "display_name", mapping.NOTE_TAG: "description"}


def _kv_exists(model, key: str, condition: Q | None = None) -> Exists:
    rows = model.objects.filter(run=OuterRef("pk"), key=key)
    if condition is not None:
        rows = rows.filter(condition)
    return Exists(rows)


def _kv_q(model, clause: search.Clause) -> Q:
    comparator = clause.comparator
    # Equality and presence start from the (key, value) index and find the few matching
    # runs at once; the other comparators test each run of the experiment.
    if comparator == "IS NULL":
        return ~Q(pk__in=model.objects.filter(key=clause.key).values("run_id"))
    if comparator == "IS NOT NULL":
        return Q(pk__in=model.objects.filter(key=clause.key).values("run_id"))
    if comparator == "=":
        return Q(pk__in=model.objects.filter(key=clause.key, value=clause.value).values("run_id"))
    return Q(_kv_exists(model, clause.key, _string_q("value", comparator, clause.value)))


def _reserved_tag_q(clause: search.Clause) -> Q:
    if clause.key == mapping.PARENT_TAG:
        if clause.comparator in ("IS NULL", "IS NOT NULL"):
            return Q(parent__isnull=clause.comparator == "IS NULL")
        return Q(parent__isnull=False) & _string_q("parent__run_id", clause.comparator, clause.value)
    field = _TAG_FIELDS[clause.key]
    if clause.comparator in ("IS NULL", "IS NOT NULL"):
        empty = Q(**{field: ""})
        return empty if clause.comparator == "IS NULL" else ~empty
    return ~Q(**{field: ""}) & _string_q(field, clause.comparator, clause.value)


def _run_clause_q(clause: search.Clause) -> Q:
    kind, key, comparator, value = clause.type, clause.key, clause.comparator, clause.value
    if kind == search.METRIC:
        series = MetricSeries.objects.filter(run=OuterRef("pk"), name=key, kind=SCALAR).filter(
            _number_q("last_value", comparator, float(value))  # type: ignore[arg-type]
        )
        return Q(Exists(series))
    if kind == search.PARAM:
        return _kv_q(RunProperty, clause)
    if kind == search.TAG:
        if key in mapping.RESERVED_TAGS:
            return _reserved_tag_q(clause)
        return _kv_q(RunTag, clause)
    if kind == search.DATASET:
        return Q(pk__in=[])  # datasets are not recorded, so no run has one
    if key == "status":
        matched = {s for s in mapping.MLFLOW_STATUSES if _python_match(s, comparator, value)}
        return Q(status__in=mapping.studio_statuses(matched))
    if key == "lifecycle_stage":
        stages = {s for s in ("active", "deleted") if _python_match(s, comparator, value)}
        if stages == {"active", "deleted"}:
            return Q()
        if not stages:
            return Q(pk__in=[])
        return Q(deleted_at__isnull="active" in stages)
    if key == "start_time":
        return _time_q("mlflow_start", comparator, value)  # type: ignore[arg-type]
    if key == "end_time":
        return _time_q("ended_at", comparator, value)  # type: ignore[arg-type]
    return _string_q(_ATTRIBUTE_FIELDS[key], comparator, value)


def filter_runs(runs: QuerySet[Run], clauses: list[search.Clause]) -> QuerySet[Run]:
    for clause in clauses:
        runs = runs.filter(_run_clause_q(clause))
    return runs


def _order_expression(order: search.OrderBy):
    key = order.key
    if order.type == search.METRIC:
        return Subquery(MetricSeries.objects.filter(run=OuterRef("pk"), name=key, kind=SCALAR).values("last_value")[:1])
    if order.type == search.PARAM:
        return Subquery(RunProperty.objects.filter(run=OuterRef("pk"), key=key).values("value")[:1])
    if order.type == search.TAG:
        if key == mapping.PARENT_TAG:
            return F("parent__run_id")
        if key in _TAG_FIELDS:
            return NullIf(_TAG_FIELDS[key], Value(""))
        return Subquery(RunTag.objects.filter(run=OuterRef("pk"), key=key).values("value")[:1])
    if key == "start_time":
        return F("mlflow_start")
    if key == "end_time":
        return F("ended_at")
    if key == "status":
        return _STATUS_NAME
    return F(_ATTRIBUTE_FIELDS[key])


def order_runs(runs: QuerySet[Run], order_by: list[search.OrderBy]) -> QuerySet[Run]:
    """MLflow's ordering: the given terms (missing values last either way), then newest start, then id."""
    terms = []
    for i, order in enumerate(order_by):
        name = f"mlflow_order_{i}"
        runs = runs.annotate(**{name: _order_expression(order)})
        field = F(name)
        terms.append(field.asc(nulls_last=True) if order.ascending else field.desc(nulls_last=True))
    if not any(o.type == search.ATTRIBUTE and o.key == "start_time" for o in order_by):
        terms.append(F("mlflow_start").desc())
    terms.append(F("run_id").asc())
    return runs.order_by(*terms)


# --- paging ---------------------------------------------------------------------------------------------------


def page_token(offset: int) -> str:
    """MLflow's token format: base64 of {"offset": n}."""
    return base64.b64encode(orjson.dumps({"offset": offset})).decode()


def page_offset(token: str | None) -> int:
    if not token:
        return 0
    try:
        data = orjson.loads(base64.b64decode(token, validate=True))
    except (binascii.Error, ValueError, orjson.JSONDecodeError):
        raise MlflowError("Invalid page token, could not base64-decode") from None
    offset = data.get("offset") if isinstance(data, dict) else None
    if type(offset) is not int or offset < 0:
        raise MlflowError(f"Invalid page token, parsed value={data!r}")
    return offset


# --- rendering pages ---------------------------------------------------------------------------------------------


class _InInts(Lookup):
    """`column IN (1, 2, ...)` with the integers written into the SQL.

    A page's run keys are integers read from the database; Django's own `in`
    lookup prepares each of a thousand values one by one, which costs more
    than the query.
    """

    lookup_name = "mlflow_in_ints"
    prepare_rhs = False

    def as_sql(self, compiler, connection):
        lhs, params = self.process_lhs(compiler, connection)
        values = ",".join(str(int(v)) for v in self.rhs) or "NULL"
        return f"{lhs} IN ({values})", params


def _by_run(model, pks: list[int], *fields: str):
    return model.objects.filter(_InInts(F("run_id"), pks)).order_by("pk").values_list("run_id", *fields)


def run_payloads(runs: QuerySet[Run]) -> list[dict]:
    """Render runs as MLflow Run messages: one query for the runs, one each for tags, params and metrics."""
    rows = list(
        runs.annotate(
            mlflow_started=Coalesce("started_at", "created_at"),
            mlflow_deleted=ExpressionWrapper(Q(deleted_at__isnull=False), output_field=BooleanField()),
        ).values(*mapping.RUN_VALUES)
    )
    if not rows:
        return []
    pks = [row["pk"] for row in rows]
    tags: dict[int, list] = defaultdict(list)
    for run_pk, key, value in _by_run(RunTag, pks, "key", "value"):
        tags[run_pk].append((key, value))
    params: dict[int, list] = defaultdict(list)
    for run_pk, key, value in _by_run(RunProperty, pks, "key", "value"):
        params[run_pk].append((key, value))
    metrics: dict[int, list] = defaultdict(list)
    series = _by_run(MetricSeries, pks, "pk", "name", "last_value", "last_step", "updated_at").filter(kind=SCALAR)
    rows_of_series = list(series)
    # The JSON copy of the newest value matters only when it is not a finite number (NaN, text), so
    # only those rows pay for decoding it.
    no_number = [pk for _run, pk, _n, value, _s, _u in rows_of_series if value is None]
    as_json = (
        dict(MetricSeries.objects.filter(pk__in=no_number).values_list("pk", "last_value_json")) if no_number else {}
    )
    for run_pk, series_pk, name, last_value, last_step, updated_at in rows_of_series:
        latest = mapping.latest_metric(name, last_value, as_json.get(series_pk), last_step, updated_at)
        if latest is not None:
            metrics[run_pk].append(latest)
    return [mapping.run_json(row, tags[row["pk"]], params[row["pk"]], metrics[row["pk"]]) for row in rows]


def run_payload(run: Run) -> dict:
    return run_payloads(Run.objects.filter(pk=run.pk))[0]


# --- experiments -----------------------------------------------------------------------------------------------------

_EXPERIMENT_TIME_FIELDS = {"creation_time": "created_at", "last_update_time": "last_activity_at"}


def _experiment_clause_q(clause: search.Clause) -> Q:
    if clause.type == search.TAG:
        if clause.key != mapping.NOTE_TAG:
            # Experiments keep no tags besides their description.
            return Q() if clause.comparator == "IS NULL" else Q(pk__in=[])
        if clause.comparator in ("IS NULL", "IS NOT NULL"):
            empty = Q(description="")
            return empty if clause.comparator == "IS NULL" else ~empty
        return ~Q(description="") & _string_q("description", clause.comparator, clause.value)
    if clause.key in _EXPERIMENT_TIME_FIELDS:
        return _time_q(_EXPERIMENT_TIME_FIELDS[clause.key], clause.comparator, clause.value)  # type: ignore[arg-type]
    if clause.key == "experiment_id":
        return _experiment_id_q(clause)
    return _string_q("name", clause.comparator, clause.value)


def _experiment_id_q(clause: search.Clause) -> Q:
    if clause.comparator not in ("=", "!=", "IN", "NOT IN"):
        raise MlflowError(f"Invalid comparator for experiment_id: {clause.comparator}")
    raw = clause.value if isinstance(clause.value, tuple) else (clause.value,)
    wanted = Q(pk__in=[]) if not raw else Q()
    matches = Q(pk__in=[])
    for item in raw:
        if item == mapping.DEFAULT_EXPERIMENT_ID:
            matches |= Q(name=mapping.DEFAULT_EXPERIMENT_NAME)
        elif isinstance(item, str) and item.isdigit():
            matches |= Q(pk=int(item)) & ~Q(name=mapping.DEFAULT_EXPERIMENT_NAME)
        else:
            raise MlflowError(f"Invalid experiment ID '{item}'. Experiment ID must be a valid integer.")
    wanted &= matches
    return ~wanted if clause.comparator in ("!=", "NOT IN") else wanted


def filter_experiments(experiments: QuerySet[Experiment], clauses: list[search.Clause]) -> QuerySet[Experiment]:
    for clause in clauses:
        experiments = experiments.filter(_experiment_clause_q(clause))
    return experiments


def order_experiments(experiments: QuerySet[Experiment], order_by: list[search.OrderBy]) -> QuerySet[Experiment]:
    fields = {"name": "name", "experiment_id": "pk", **_EXPERIMENT_TIME_FIELDS}
    terms = [F(fields[o.key]).asc() if o.ascending else F(fields[o.key]).desc() for o in order_by]
    if not order_by:
        terms.append(F("created_at").desc())
    terms.append(F("pk").asc())
    return experiments.order_by(*terms)
