"""MLflow's request rules: how fields arrive, and what MLflow refuses before any store sees them.

Fields come as protobuf JSON (POST bodies) or as query strings (GET), so a
64-bit integer may be a number or a string of digits and a double may be
"NaN". The checks and their messages are MLflow's own
(mlflow.utils.validation, mlflow.server.handlers): names of metrics, params
and tags, batch limits, the 1 MB log-batch body. Run Studio's own rules
(immutable properties, tag and value sizes, the lifecycle) are applied after
these by runs.services.
"""

from __future__ import annotations

import math
import posixpath
import re

import orjson
from django.http import HttpRequest, QueryDict

from runs import limits
from runs.mlflow.errors import REQUEST_DOCS_HINT, MlflowError, invalid, missing

MAX_ENTITY_KEY_LENGTH = 250
MAX_PARAMS_TAGS_PER_BATCH = 100
MAX_METRICS_PER_BATCH = 1000
MAX_ENTITIES_PER_BATCH = 1000
MAX_BATCH_LOG_REQUEST_SIZE = 1_000_000
# MLflow allows 6000-character params and 8000-character tags; Run Studio
# stores tag and property values up to limits.VALUE_MAX and says so rather
# than cutting values short.
PARAM_VALUE_MAX = limits.VALUE_MAX
TAG_VALUE_MAX = limits.VALUE_MAX

_NAME_RE = re.compile(r"^[/\w.\- :]*$")
_NONFINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
_INT_RE = re.compile(r"^[-+]?\d+$")


class Payload:
    """The request's fields, from its JSON body (POST) or its query string (GET)."""

    def __init__(self, data: dict, query: QueryDict | None = None):
        self.data = data
        self.query = query

    @classmethod
    def of(cls, request: HttpRequest) -> Payload:
        if request.method == "GET":
            return cls({key: request.GET.get(key) for key in request.GET}, request.GET)
        body = request.body
        if not body.strip():
            return cls({})
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise MlflowError("The request body is not valid JSON; send a JSON object.", "BAD_REQUEST") from None
        if isinstance(data, str):  # old clients double-encode the body
            try:
                data = orjson.loads(data)
            except orjson.JSONDecodeError:
                data = None
        if not isinstance(data, dict):
            raise MlflowError("The request body must be a JSON object.", "BAD_REQUEST")
        return cls(data)

    def raw(self, name: str) -> object:
        return self.data.get(name)

    def string(self, name: str, *, required: bool = False, alias: str | None = None) -> str | None:
        value = self.data.get(name)
        if value is None and alias:
            value = self.data.get(alias)
        if value is None or value == "":
            if required:
                raise missing(name)
            return None if value is None else ""
        if not isinstance(value, str):
            raise invalid(name, value, f" Hint: Value was of type '{type(value).__name__}'.{REQUEST_DOCS_HINT}")
        return value

    def integer(self, name: str, *, default: int | None = None) -> int | None:
        value = self.data.get(name)
        if value is None or value == "":
            return default
        number = as_int(value)
        if number is None:
            raise invalid(name, value, f" Hint: Value was of type '{type(value).__name__}'.{REQUEST_DOCS_HINT}")
        return number

    def strings(self, name: str) -> list[str]:
        """A repeated string field: a JSON list, or a query parameter given once or several times."""
        if self.query is not None:
            return [v for v in self.query.getlist(name)]
        value = self.data.get(name)
        if value is None:
            return []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise invalid(name, value, f" Hint: Value was of type '{type(value).__name__}'.{REQUEST_DOCS_HINT}")
        return value

    def objects(self, name: str) -> list[dict]:
        value = self.data.get(name)
        if value is None:
            return []
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise invalid(name, value, f" Hint: Value was of type '{type(value).__name__}'.{REQUEST_DOCS_HINT}")
        return value


def as_int(value: object) -> int | None:
    """A protobuf int64 from JSON: a whole number, or a string of digits."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and _INT_RE.match(value.strip()):
        return int(value)
    return None


def as_double(value: object) -> float | None:
    """A protobuf double from JSON: a number, "NaN", "Infinity", "-Infinity" or a numeric string."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        if value in _NONFINITE:
            return _NONFINITE[value]
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _json_path(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _bad_characters() -> str:
    return (
        "Names may only contain alphanumerics, underscores (_), dashes (-), periods (.), spaces ( ), colon(:) "
        "and slashes (/)."
    )


def _path_not_unique(name: str) -> bool:
    norm = posixpath.normpath(name)
    return norm != name or norm == "." or norm.startswith("..") or norm.startswith("/")


def _check_name(name: object, path: str, *, none_message: str | None = None) -> str:
    if name is None or name == "":
        if none_message:
            raise invalid(path, name, none_message)
        raise missing(path)
    if not isinstance(name, str):
        raise invalid(path, name, f" Hint: Value was of type '{type(name).__name__}'.")
    if not _NAME_RE.match(name):
        raise invalid(path, name, _bad_characters())
    if _path_not_unique(name):
        raise invalid(
            path,
            name,
            "Names may be treated as files in certain cases, and must not resolve to other names when treated "
            f"as such. This name would resolve to {posixpath.normpath(name)!r}",
        )
    return name


def _check_length(what: str, limit: int, value: str) -> None:
    if len(value) > limit:
        message = f"'{what}' exceeds the maximum length of {limit} characters"
        if limit == limits.VALUE_MAX:
            message += " (Run Studio keeps tag and param values up to this size; MLflow's own server truncates)"
        raise MlflowError(message)


def check_metric(item: dict, path: str = "") -> tuple[str, float, int, int]:
    """A metric as (key, value, timestamp ms, step). Raises MlflowError in MLflow's words."""
    key = _check_name(
        item.get("key"),
        _json_path(path, "name"),
        none_message="Metric name cannot be None. A key name must be provided.",
    )
    raw_value, raw_ts, raw_step = item.get("value"), item.get("timestamp"), item.get("step", 0)
    if raw_value is None:
        raise missing(_json_path(path, "value"))
    value = as_double(raw_value)
    if value is None:
        raise invalid(
            _json_path(path, "value"),
            raw_value,
            f"(timestamp={raw_ts}). Please specify value as a valid double (64-bit floating point)",
        )
    timestamp = as_int(raw_ts)
    if timestamp is None or timestamp < 0:
        raise invalid(
            _json_path(path, "timestamp"),
            raw_ts,
            f"metric '{key}' (value={raw_value}). Timestamp must be a nonnegative long (64-bit integer) ",
        )
    step = as_int(raw_step if raw_step is not None else 0)
    if step is None or not -(2**63) <= step < 2**63:
        raise invalid(
            _json_path(path, "step"),
            raw_step,
            f"metric '{key}' (value={raw_value}). Step must be a valid long (64-bit integer).",
        )
    _check_length("Metric name", MAX_ENTITY_KEY_LENGTH, key)
    return key, value, timestamp, step


def _check_value(value: object, path: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise invalid(path, value, f" Hint: Value was of type '{type(value).__name__}'.")
    return value


def check_param(item: dict, path: str = "") -> tuple[str, str]:
    key = _check_name(item.get("key"), _json_path(path, "key"))
    value = _check_value(item.get("value"), _json_path(path, "value"))
    _check_length("Param key", MAX_ENTITY_KEY_LENGTH, key)
    _check_length("Param value", PARAM_VALUE_MAX, value)
    return key, value


def check_tag(item: dict, path: str = "") -> tuple[str, str]:
    key = _check_name(item.get("key"), _json_path(path, "key"))
    value = _check_value(item.get("value"), _json_path(path, "value"))
    _check_length(_json_path(path, "key"), MAX_ENTITY_KEY_LENGTH, key)
    _check_length(_json_path(path, "value"), TAG_VALUE_MAX, value)
    return key, value


def _check_batch_limit(what: str, limit: int, count: int) -> None:
    if count > limit:
        raise MlflowError(
            f"A batch logging request can contain at most {limit} {what}. Got {count} {what}. "
            f"Please split up {what} across multiple requests and try again."
        )


def check_batch(body_size: int, metrics: list[dict], params: list[dict], tags: list[dict]):
    """log-batch's checks in MLflow's order: body size, required fields, each item, counts, duplicates."""
    if body_size > MAX_BATCH_LOG_REQUEST_SIZE:
        raise MlflowError(
            f"Batched logging API requests must be at most {MAX_BATCH_LOG_REQUEST_SIZE} bytes, got a request of "
            f"size {body_size}."
        )
    for i, m in enumerate(metrics):
        for field in ("key", "value", "timestamp"):
            if m.get(field) is None or m.get(field) == "":
                raise MlflowError(f"Missing value for required parameter 'metrics[{i}].{field}'.{REQUEST_DOCS_HINT}")
    for name, items in (("params", params), ("tags", tags)):
        for i, item in enumerate(items):
            if item.get("key") is None or item.get("key") == "":
                raise MlflowError(f"Missing value for required parameter '{name}[{i}].key'.{REQUEST_DOCS_HINT}")
    checked_metrics = _check_metrics(metrics)
    checked_params = [check_param(p, f"params[{i}]") for i, p in enumerate(params)]
    checked_tags = [check_tag(t, f"tags[{i}]") for i, t in enumerate(tags)]
    _check_batch_limit("metrics", MAX_METRICS_PER_BATCH, len(metrics))
    _check_batch_limit("params", MAX_PARAMS_TAGS_PER_BATCH, len(params))
    _check_batch_limit("tags", MAX_PARAMS_TAGS_PER_BATCH, len(tags))
    _check_batch_limit("metrics, params, and tags", MAX_ENTITIES_PER_BATCH, len(metrics) + len(params) + len(tags))
    seen: set[str] = set()
    dupes = []
    for key, _value in checked_params:
        if key in seen:
            dupes.append(key)
        seen.add(key)
    if dupes:
        raise MlflowError(
            f"Duplicate parameter keys have been submitted: {dupes}. Please ensure the request contains only one "
            "param value per param key."
        )
    return checked_metrics, checked_params, checked_tags


def _check_metrics(items: list[dict]) -> list[tuple[str, float, int, int]]:
    """check_metric for each item; a batch repeats a few names, so each name is checked once.

    Items in the form the MLflow client sends (float value, integer timestamp
    and step, a name already seen) take the short path; anything else goes
    through check_metric, which accepts the other JSON spellings or raises.
    """
    seen: set[str] = set()
    out = []
    for i, item in enumerate(items):
        key, value, timestamp, step = item.get("key"), item.get("value"), item.get("timestamp"), item.get("step", 0)
        if (
            key in seen
            and type(value) is float
            and type(timestamp) is int
            and timestamp >= 0
            and type(step) is int
            and _INT64_MIN <= step <= _INT64_MAX
        ):
            out.append((key, value, timestamp, step))
            continue
        checked = check_metric(item, f"metrics[{i}]")
        seen.add(checked[0])
        out.append(checked)
    return out


_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def metric_series(points: list[tuple[str, float, int, int]]) -> list[dict]:
    """MLflow metrics as Run Studio's metric-batch series: one series per key, times in seconds."""
    grouped: dict[str, dict] = {}
    for key, value, timestamp, step in points:
        series = grouped.get(key)
        if series is None:
            series = grouped[key] = {"name": key, "kind": "scalar", "values": [], "times": [], "steps": []}
        series["values"].append(value if math.isfinite(value) else _wire_nonfinite(value))
        series["times"].append(timestamp / 1000.0)
        series["steps"].append(step)
    return list(grouped.values())


def _wire_nonfinite(value: float) -> dict:
    if math.isnan(value):
        return {"$float": "NaN"}
    return {"$float": "Infinity" if value > 0 else "-Infinity"}
