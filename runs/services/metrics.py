"""Metric ingestion (batches, exactly once) and metric reads.

A batch carries a client-chosen `batch_id`; storing the id and the points in
one transaction makes a retried batch a no-op, so the SDK can retry freely
after a timeout without duplicating points.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import numpy as np
from django.db import IntegrityError, transaction
from django.db.models import BinaryField, Case, F, Value, When
from django.utils import timezone

from runs import limits, metrics_codec
from runs.errors import Conflict, InvalidInput, NotFound
from runs.models import MetricBatch, MetricChunk, MetricEntry, MetricSeries, Run

Kind = MetricSeries.Kind
BATCH_ID_RE = re.compile(r"^[A-Za-z0-9_\-:.]{1,64}$")


def metrics_ingest(run: Run, payload: object) -> dict:
    """Store one batch of metric points and entries. Returns counts.

    Raises InvalidInput (malformed batch; nothing stored) or Conflict (a name
    already used with another kind). A batch id seen before returns
    {"duplicate": true} and stores nothing.
    """
    if not isinstance(payload, dict):
        raise InvalidInput("body must be a JSON object with batch_id and series")
    batch_id = payload.get("batch_id")
    if not isinstance(batch_id, str) or not BATCH_ID_RE.fullmatch(batch_id):
        raise InvalidInput("batch_id must be 1-64 letters, digits, '_', '-', ':' or '.'", field="batch_id")
    items = payload.get("series")
    if not isinstance(items, list) or not items:
        raise InvalidInput("series must be a non-empty list", field="series")
    if len(items) > limits.SERIES_PER_BATCH_MAX:
        raise InvalidInput(f"{len(items)} series in one batch; the limit is {limits.SERIES_PER_BATCH_MAX}")
    parsed = [_parse_item(item) for item in items]
    total = sum(len(p["values"]) for p in parsed)
    if total > limits.POINTS_PER_BATCH_MAX:
        raise InvalidInput(f"{total} points in one batch; the limit is {limits.POINTS_PER_BATCH_MAX}")
    try:
        return _store(run, batch_id, parsed, total)
    except IntegrityError:
        # A concurrent batch created one of our new series first; try once more.
        return _store(run, batch_id, parsed, total)


def _parse_item(item: object) -> dict:
    if not isinstance(item, dict):
        raise InvalidInput("each series must be an object with name, kind and values")
    name = limits.check_key(item.get("name"), "metric name")
    kind = item.get("kind", Kind.SCALAR)
    if kind not in Kind.values:
        raise InvalidInput(f"metric '{name}': kind must be one of {', '.join(Kind.values)}")
    values = item.get("values")
    if not isinstance(values, list) or not values:
        raise InvalidInput(f"metric '{name}': values must be a non-empty list")
    description = limits.check_text(item.get("description"), "metric description", limits.DESCRIPTION_MAX)
    parsed = {
        "name": name,
        "kind": kind,
        "values": values,
        "times": item.get("times"),
        "steps": item.get("steps"),
        "description": description,
    }
    if kind != Kind.SCALAR:
        _check_entries(name, kind, values, item.get("times"))
    return parsed


def _check_entries(name: str, kind: str, values: list, times: object) -> None:
    if not isinstance(times, list) or len(times) != len(values):
        raise InvalidInput(f"metric '{name}': times must be a list as long as values")
    for value in values:
        if kind == Kind.LIST and not isinstance(value, list):
            raise InvalidInput(f"metric '{name}': a list metric value must be a JSON array")
        if kind in (Kind.ROW, Kind.TABLE, Kind.IMAGE) and not isinstance(value, dict):
            raise InvalidInput(f"metric '{name}': a {kind} metric value must be a JSON object")
        if kind == Kind.TABLE:
            lengths = {len(col) if isinstance(col, list) else -1 for col in value.values()}
            if -1 in lengths or len(lengths) > 1:
                raise InvalidInput(f"metric '{name}': table columns must be lists of the same length")
        if kind == Kind.ROW and any(isinstance(cell, list | dict) for cell in value.values()):
            raise InvalidInput(f"metric '{name}': row cells must be scalars")
        if len(json.dumps(value, allow_nan=False, default=str)) > limits.ENTRY_JSON_MAX:
            raise InvalidInput(f"metric '{name}': one value is larger than {limits.ENTRY_JSON_MAX} bytes")
        limits.check_no_nul(value, f"metric '{name}': a value")


def _store(run: Run, batch_id: str, parsed: list[dict], total: int) -> dict:
    with transaction.atomic():
        try:
            with transaction.atomic():
                MetricBatch.objects.create(run=run, batch_id=batch_id, points=total)
        except IntegrityError:
            return {"batch_id": batch_id, "stored": 0, "duplicate": True}
        names = {p["name"]: p for p in parsed}
        series = {s.name: s for s in MetricSeries.objects.select_for_update().filter(run=run, name__in=list(names))}
        missing = [
            MetricSeries(run=run, name=n, kind=p["kind"], description=p["description"])
            for n, p in names.items()
            if n not in series
        ]
        if missing:
            MetricSeries.objects.bulk_create(missing)
            series.update(
                {
                    s.name: s
                    for s in MetricSeries.objects.select_for_update().filter(
                        run=run, name__in=[m.name for m in missing]
                    )
                }
            )
        chunks, entries = [], []
        now = timezone.now()
        for item in parsed:
            s = series[item["name"]]
            if s.kind != item["kind"]:
                raise Conflict(
                    f"metric '{s.name}' of run {run.run_id} is a {s.kind} metric; it cannot take {item['kind']} values",
                    code="metric_kind",
                )
            if s.kind == Kind.SCALAR:
                chunks.append(_scalar_chunk(s, item))
            else:
                entries.extend(_entries(s, item))
            s.save(update_fields=["count", "last_step", "last_value", "last_value_json", "updated_at"])
        if chunks:
            MetricChunk.objects.bulk_create(chunks)
        if entries:
            MetricEntry.objects.bulk_create(entries, batch_size=1000)
        if run.last_heartbeat_at is not None:
            Run.objects.filter(pk=run.pk).update(last_heartbeat_at=now)
    return {"batch_id": batch_id, "stored": total, "duplicate": False}


def _scalar_chunk(series: MetricSeries, item: dict) -> MetricChunk:
    packed = metrics_codec.pack(series.name, item["values"], item["steps"], item["times"], series.count)
    chunk = MetricChunk(
        series=series,
        seq=series.count,
        count=packed.count,
        first_step=int(packed.steps[0]),
        last_step=int(packed.steps[-1]),
        steps=packed.steps.astype("<i8").tobytes(),
        steps_contiguous=bool(packed.count == 1 or np.all(np.diff(packed.steps) == 1)),
        times=packed.times.astype("<f8").tobytes(),
        values=packed.values.astype("<f8").tobytes(),
        types=packed.types,
        texts=packed.texts,
    )
    last = packed.count - 1
    type_code = packed.types[last] if packed.types else metrics_codec.T_FLOAT
    last_float = float(packed.values[last])
    last_value = metrics_codec.python_scalar(last_float, type_code, (packed.texts or {}).get(str(last)))
    series.count += packed.count
    series.last_step = int(packed.steps[last])
    series.last_value = (
        last_float if type_code in (metrics_codec.T_FLOAT, metrics_codec.T_INT) and np.isfinite(last_float) else None
    )
    series.last_value_json = metrics_codec.to_wire(last_value)
    return chunk


def _entries(series: MetricSeries, item: dict) -> list[MetricEntry]:
    out = []
    for i, (value, t) in enumerate(zip(item["values"], item["times"], strict=True)):
        try:
            logged_at = datetime.fromtimestamp(float(t), tz=UTC)
        except (TypeError, ValueError, OverflowError, OSError):
            raise InvalidInput(f"metric '{series.name}': times must be seconds since the epoch") from None
        out.append(MetricEntry(series=series, seq=series.count + i, value=value, logged_at=logged_at))
    series.count += len(out)
    series.last_value_json = item["values"][-1] if series.kind == Kind.IMAGE else None
    return out


# --- reads -----------------------------------------------------------------------------------


def series_arrays(series: MetricSeries, *, times: bool = True):
    """All points of a scalar series: steps, times, values, types, texts (see metrics_codec.concat).

    Only the bytes needed are read: contiguous steps are rebuilt, and times are
    skipped with times=False (a chart by step reads a third of the data).
    """
    fields = ["count", "first_step", "steps_contiguous", "values", "types", "texts"] + (["times"] if times else [])
    chunks = (
        MetricChunk.objects.filter(series=series)
        .order_by("seq")
        .annotate(
            step_bytes=Case(
                When(steps_contiguous=True, then=Value(b"")), default=F("steps"), output_field=BinaryField()
            )
        )
        .values(*fields, "step_bytes")
    )
    return metrics_codec.concat(chunks.iterator(chunk_size=200), times=times)


def metrics_summary(run: Run) -> dict:
    """get_metrics(): {name: value} as the v1 SDK returns it.

    A scalar logged once is a value, logged several times a list; a list metric
    is its list; rows logged with log_row form a table {column: [values]};
    tables merge column-wise; an image is the file path it was stored at.
    """
    out: dict = {}
    for series in MetricSeries.objects.filter(run=run).order_by("pk"):
        if series.kind == Kind.SCALAR:
            _steps, _times, values, types, texts = series_arrays(series)
            data = [metrics_codec.to_wire(v) for v in metrics_codec.to_python(values, types, texts)]
            out[series.name] = data[0] if len(data) == 1 else data
            continue
        entries = list(MetricEntry.objects.filter(series=series).order_by("seq").values_list("value", flat=True))
        out[series.name] = _aggregate_entries(series.kind, entries)
    return out


def _aggregate_entries(kind: str, entries: list):
    if kind == Kind.LIST:
        return entries[0] if len(entries) == 1 else entries
    if kind == Kind.IMAGE:
        paths = [e.get("path") for e in entries]
        return paths[0] if len(paths) == 1 else paths
    if kind == Kind.ROW and len(entries) == 1:
        return dict(entries[0])
    table: dict[str, list] = {}
    for entry in entries:
        rows = entry if kind == Kind.TABLE else {k: [v] for k, v in entry.items()}
        for column, cells in rows.items():
            table.setdefault(column, []).extend(cells)
    return table


def series_get(run: Run, name: str) -> MetricSeries:
    series = MetricSeries.objects.filter(run=run, name=name).first()
    if series is None:
        raise NotFound(f"run {run.run_id} has no metric named '{name}'")
    return series


def series_points(series: MetricSeries, *, x: str = "step", max_points: int | None = None) -> dict:
    """Points of a scalar series for charts and history, downsampled to max_points if given.

    Text and None values are left out of charts; NaN/inf are sent as {"$float": ...}.
    """
    if series.kind != Kind.SCALAR:
        raise InvalidInput(f"metric '{series.name}' is a {series.kind} metric; only scalar metrics have points")
    if x not in ("step", "time"):
        raise InvalidInput("x must be 'step' or 'time'", field="x")
    steps, times, values, types, texts = series_arrays(series, times=max_points is None or x == "time")
    total = len(values)
    if max_points is not None:
        if types is not None:
            numeric = np.isin(types, (metrics_codec.T_FLOAT, metrics_codec.T_INT, metrics_codec.T_BOOL))
            steps, values = steps[numeric], values[numeric]
            times = times[numeric] if times is not None else None
        xs = steps if x == "step" else times
        idx, kept = metrics_codec.downsample(np.arange(len(values)), values, max_points)
        return {
            "name": series.name,
            "total": total,
            "x": xs[idx].tolist(),
            "steps": steps[idx].tolist(),
            "times": times[idx].tolist() if times is not None else [],
            "values": [metrics_codec.to_wire(v) for v in kept.tolist()],
            "downsampled": len(idx) < len(values),
        }
    py_values = metrics_codec.to_python(values, types, texts)
    return {
        "name": series.name,
        "total": total,
        "steps": steps.tolist(),
        "times": times.tolist(),
        "values": [metrics_codec.to_wire(v) for v in py_values],
        "downsampled": False,
    }
