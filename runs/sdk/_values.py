"""Metric values: checked when logged (so the studio never rejects a batch for them), encoded for the wire.

Scalars are int, float, bool, str and None, and numpy scalars (turned into
their Python value). JSON has no NaN or infinity, so non-finite floats travel
as {"$float": "NaN" | "Infinity" | "-Infinity"}, also inside list, row and
table values; `decode` turns them back into floats when metrics are read.
"""

from __future__ import annotations

import math
import numbers
import types
from collections.abc import Mapping
from typing import Any

from runs.sdk.exceptions import UserErrorException

INT_MAX = 2**53  # stored as float64 on the studio; larger integers would silently change
TEXT_MAX = 4096
LIST_MESSAGE = "run.log does not support list type. Use run.log_list instead"
_NAN = {"$float": "NaN"}
_POS_INF = {"$float": "Infinity"}
_NEG_INF = {"$float": "-Infinity"}
_NONFINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
_SEQUENCES = (list, tuple, range, set, frozenset, types.GeneratorType)


def nonfinite(value: float) -> dict:
    if value != value:
        return _NAN
    return _POS_INF if value > 0 else _NEG_INF


def check_name(name: object) -> str:
    if not isinstance(name, str) or not name.strip():
        raise UserErrorException(f"a metric name must be a non-empty string, not {name!r}")
    if len(name) > 255:
        raise UserErrorException(f"metric name '{name[:40]}…' is {len(name)} characters; the limit is 255")
    return name


def scalar(name: str, value: Any) -> Any:
    """The wire form of one scalar metric value. Raises UserErrorException for anything else."""
    kind = type(value)
    if kind is float:
        # x - x is 0.0 for finite x and NaN for NaN/±inf: one subtraction instead of math.isfinite's call.
        return value if value - value == 0.0 else nonfinite(value)
    if kind is int:
        if -INT_MAX <= value <= INT_MAX:
            return value
        raise UserErrorException(
            f"metric '{name}': integer {value} is outside ±2**53 and would lose precision; "
            "log it as a float or a string"
        )
    if kind is bool or value is None:
        return value
    if kind is str:
        if len(value) > TEXT_MAX:
            raise UserErrorException(
                f"metric '{name}': a text value is {len(value)} characters; the limit is {TEXT_MAX}"
            )
        return value
    if isinstance(value, _SEQUENCES) or getattr(value, "ndim", 0):
        raise UserErrorException(LIST_MESSAGE)
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:  # numpy scalar
        return scalar(name, value.item())
    if isinstance(value, bool | str):  # subclasses (numpy.str_, enum str)
        return bool(value) if isinstance(value, bool) else str(value)
    if isinstance(value, numbers.Integral):
        return scalar(name, int(value))
    if isinstance(value, numbers.Real):
        return scalar(name, float(value))
    raise UserErrorException(
        f"metric '{name}': a value of type {kind.__name__} cannot be logged; log numbers, bools, strings or None "
        "(log_list, log_row and log_table for collections)"
    )


def scalar_list(name: str, values: Any) -> list:
    """A list metric's values (log_list): any iterable of scalars."""
    if isinstance(values, str | bytes | Mapping) or not hasattr(values, "__iter__"):
        raise UserErrorException(f"metric '{name}': log_list takes a list of values, not {type(values).__name__}")
    out = []
    for item in values:
        try:
            out.append(scalar(name, item))
        except UserErrorException:
            raise UserErrorException(
                f"metric '{name}': log_list values must be scalars (numbers, bools, strings or None), "
                f"not {type(item).__name__}"
            ) from None
    return out


def row(name: str, cells: Mapping[str, Any]) -> dict:
    """One table row (log_row): column → scalar."""
    if not cells:
        raise UserErrorException(f"metric '{name}': log_row needs at least one column=value")
    out = {}
    for column, value in cells.items():
        try:
            out[str(column)] = scalar(name, value)
        except UserErrorException:
            raise UserErrorException(
                f"metric '{name}': log_row cell '{column}' must be a scalar, not {type(value).__name__}"
            ) from None
    return out


def table(name: str, value: Any) -> dict:
    """A table (log_table): column → list of scalars, every column the same length."""
    if not isinstance(value, Mapping) or not value:
        raise UserErrorException(f"metric '{name}': log_table takes a non-empty dict of column → list of values")
    out = {str(column): scalar_list(name, cells) for column, cells in value.items()}
    lengths = {len(cells) for cells in out.values()}
    if len(lengths) > 1:
        raise UserErrorException(
            f"metric '{name}': log_table columns must all have the same length (got lengths {sorted(lengths)})"
        )
    return out


def decode(value: Any) -> Any:
    """Wire form → Python: {"$float": "NaN"} → nan, recursively through lists and dicts."""
    if isinstance(value, dict):
        if len(value) == 1 and "$float" in value and value["$float"] in _NONFINITE:
            return _NONFINITE[value["$float"]]
        return {k: decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [decode(v) for v in value]
    return value
