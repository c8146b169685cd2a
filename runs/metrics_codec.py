"""Scalar metric points: wire validation, packed storage, decoding, downsampling.

Wire form of one value: a JSON number, bool, string or null; non-finite floats
travel as {"$float": "NaN" | "Infinity" | "-Infinity"} (JSON has no literal
for them). NaN and ±inf are accepted and round-tripped exactly.

Storage: one chunk per (series, batch) with little-endian int64 steps,
float64 times and float64 values. Integers, bools, strings and None are
marked in a one-byte-per-point `types` array (empty when all are floats);
strings are kept in a sparse {index: text} map.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from runs import limits
from runs.errors import InvalidInput

T_FLOAT, T_INT, T_BOOL, T_STR, T_NONE = 0, 1, 2, 3, 4
_NONFINITE_IN = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def nonfinite_out(value: float) -> dict:
    if math.isnan(value):
        return {"$float": "NaN"}
    return {"$float": "Infinity" if value > 0 else "-Infinity"}


@dataclass
class PackedPoints:
    steps: np.ndarray  # int64
    times: np.ndarray  # float64
    values: np.ndarray  # float64
    types: bytes  # b"" when all floats
    texts: dict[str, str] | None

    @property
    def count(self) -> int:
        return len(self.values)


def pack(name: str, values: list, steps: list | None, times: list, first_auto_step: int) -> PackedPoints:
    """Validate one series' points from the wire and pack them. Raises InvalidInput."""
    n = len(values)
    if not isinstance(times, list) or len(times) != n:
        raise InvalidInput(f"metric '{name}': times must be a list as long as values ({n})")
    if steps is not None and (not isinstance(steps, list) or len(steps) != n):
        raise InvalidInput(f"metric '{name}': steps must be a list as long as values ({n}), or omitted")
    floats = [0.0] * n
    types = bytearray(n)
    texts: dict[str, str] = {}
    mixed = False
    for i, v in enumerate(values):
        tv = type(v)
        if tv is float:
            floats[i] = v
        elif tv is int:
            if -limits.INT_METRIC_MAX <= v <= limits.INT_METRIC_MAX:
                floats[i] = float(v)
                types[i] = T_INT
                mixed = True
            else:
                raise InvalidInput(
                    f"metric '{name}': integer {v} is outside ±2**53 and would lose precision; log it as a "
                    "float or a string"
                )
        elif tv is bool:
            floats[i] = 1.0 if v else 0.0
            types[i] = T_BOOL
            mixed = True
        elif tv is str:
            if len(v) > limits.VALUE_MAX:
                raise InvalidInput(
                    f"metric '{name}': a text value is {len(v)} characters; the limit is {limits.VALUE_MAX}"
                )
            if "\x00" in v:  # as for tags; PostgreSQL's JSON (where texts are kept) cannot hold it
                raise InvalidInput(f"metric '{name}': a text value contains a NUL character")
            floats[i] = math.nan
            types[i] = T_STR
            texts[str(i)] = v
            mixed = True
        elif v is None:
            floats[i] = math.nan
            types[i] = T_NONE
            mixed = True
        elif tv is dict and len(v) == 1 and v.get("$float") in _NONFINITE_IN:
            floats[i] = _NONFINITE_IN[v["$float"]]
        else:
            raise InvalidInput(
                f"metric '{name}': value {str(v)[:60]!r} has type {tv.__name__}; log numbers, bools, strings "
                "or null (log_list/log_row/log_table for collections)"
            )
    try:
        times_arr = np.asarray(times, dtype=np.float64)
    except (TypeError, ValueError):
        raise InvalidInput(f"metric '{name}': times must be numbers (seconds since the epoch)") from None
    if steps is None:
        steps_arr = np.arange(first_auto_step, first_auto_step + n, dtype=np.int64)
    else:
        auto = np.arange(first_auto_step, first_auto_step + n, dtype=np.int64)
        steps_arr = np.empty(n, dtype=np.int64)
        for i, s in enumerate(steps):
            if s is None:
                steps_arr[i] = auto[i]
            elif type(s) is int and -(2**63) <= s < 2**63:
                steps_arr[i] = s
            else:
                raise InvalidInput(f"metric '{name}': step {str(s)[:40]!r} is not an integer")
    return PackedPoints(
        steps=steps_arr,
        times=times_arr,
        values=np.asarray(floats, dtype=np.float64),
        types=bytes(types) if mixed else b"",
        texts=texts or None,
    )


def concat(chunks, *, times: bool = True) -> tuple:
    """Decode chunk rows (dicts, in seq order) into steps, times, values, types (None = all float), texts.

    A row's "step_bytes" may be empty when "steps_contiguous" says they can be rebuilt
    from "first_step"; with times=False the times are not decoded (None returned).
    """
    steps, times_out, values, types = [], [], [], []
    texts: dict[int, str] = {}
    offset = 0
    any_types = False
    for chunk in chunks:
        count = chunk["count"]
        if chunk["steps_contiguous"]:
            steps.append(np.arange(chunk["first_step"], chunk["first_step"] + count, dtype=np.int64))
        else:
            steps.append(np.frombuffer(bytes(chunk["step_bytes"]), dtype="<i8"))
        if times:
            times_out.append(np.frombuffer(bytes(chunk["times"]), dtype="<f8"))
        values.append(np.frombuffer(bytes(chunk["values"]), dtype="<f8"))
        if chunk["types"]:
            any_types = True
            types.append(np.frombuffer(bytes(chunk["types"]), dtype=np.uint8))
        else:
            types.append(np.zeros(count, dtype=np.uint8))
        for key, text in (chunk["texts"] or {}).items():
            texts[offset + int(key)] = text
        offset += count
    if not values:
        empty_f = np.zeros(0, dtype=np.float64)
        return np.zeros(0, dtype=np.int64), (empty_f if times else None), empty_f, None, {}
    return (
        np.concatenate(steps),
        np.concatenate(times_out) if times else None,
        np.concatenate(values),
        np.concatenate(types) if any_types else None,
        texts,
    )


def to_python(values: np.ndarray, types: np.ndarray | None, texts: dict[int, str]) -> list:
    """Values as the Python objects that were logged (ints, bools, strings, None, floats)."""
    out = values.tolist()
    if types is None:
        return out
    for i in np.flatnonzero(types).tolist():
        t = types[i]
        if t == T_INT:
            out[i] = int(out[i])
        elif t == T_BOOL:
            out[i] = bool(out[i])
        elif t == T_STR:
            out[i] = texts.get(i, "")
        else:
            out[i] = None
    return out


def to_wire(value):
    if type(value) is float and not math.isfinite(value):
        return nonfinite_out(value)
    return value


def python_scalar(value: float, type_code: int, text: str | None):
    if type_code == T_INT:
        return int(value)
    if type_code == T_BOOL:
        return bool(value)
    if type_code == T_STR:
        return text
    if type_code == T_NONE:
        return None
    return value


def downsample(x: np.ndarray, y: np.ndarray, max_points: int) -> tuple[np.ndarray, np.ndarray]:
    """Keep each bucket's minimum and maximum (in x order) so spikes survive.

    `x` must be sorted or at least in logging order; returns at most
    `max_points` points. Non-finite y values are kept out of the extremes.
    """
    n = len(y)
    if n <= max_points:
        return x, y
    buckets = max(1, max_points // 2)
    size = math.ceil(n / buckets)
    pad = buckets * size - n
    y_lo = np.where(np.isfinite(y), y, np.inf)
    y_hi = np.where(np.isfinite(y), y, -np.inf)
    if pad:
        y_lo = np.concatenate([y_lo, np.full(pad, np.inf)])
        y_hi = np.concatenate([y_hi, np.full(pad, -np.inf)])
    lo_idx = np.argmin(y_lo.reshape(buckets, size), axis=1) + np.arange(buckets) * size
    hi_idx = np.argmax(y_hi.reshape(buckets, size), axis=1) + np.arange(buckets) * size
    idx = np.unique(np.concatenate([np.minimum(lo_idx, n - 1), np.minimum(hi_idx, n - 1)]))
    return x[idx], y[idx]
