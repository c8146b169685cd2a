"""--query and -o: JMESPath over the JSON result, then json, jsonc, yaml, table or tsv.

--query is standard JMESPath (the `jmespath` package), applied to the JSON a
command would print. The how-to's `[?tags.keys(@)[?starts_with(@, 'x')]]`
is standard too: a function call on the right of `.` is evaluated with `@`
bound to the value on the left (`tags`), so it is `keys(tags)`. Run records
always carry `tags` and `properties` as objects (possibly empty), so such
queries never meet a null.

Formats:
- json: indented JSON (keys in the order the command builds them).
- jsonc: the same, coloured when stdout is a terminal (and NO_COLOR is unset).
- yaml: block-style YAML (PyYAML).
- table: aligned columns with a header and a dashed rule. Runs get the columns
  RunId, Number, Status, Target, StartTime (UTC), Duration, Tags (and
  Experiment when several appear), whether or not a --query filtered them;
  other lists get one column per key; nested objects are summarised as
  `k=v, ...` and long cells are cut with "…".
- tsv: no header; one line per item; an object's values in key order, a
  list's items in order; null is empty, booleans are true/false, nested
  objects and lists are compact JSON; in string values, tabs, newlines and
  backslashes are written as \\t, \\n and \\\\ so every item stays on one line.
"""

from __future__ import annotations

import json
import os
import sys
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import IO, Any

from runs.cli.errors import CliError, Exit

FORMATS = ("json", "jsonc", "table", "tsv", "yaml")
CELL_MAX = 48


@dataclass
class Result:
    """What a command produced: `data` is printed with --query and -o applied, then `code` is the exit code.

    `table(data)` may return (headers, rows, numeric columns) to lay out -o table; None falls back
    to one column per key.
    """

    data: Any
    default_output: str = "json"
    table: Callable[[Any], tuple | None] | None = None
    code: int = Exit.OK


# --- --query ------------------------------------------------------------------------------------------


def compile_query(expression: str) -> Any:
    """Compile a JMESPath expression; an invalid one is a usage error naming the problem."""
    import jmespath
    from jmespath import exceptions

    try:
        return jmespath.compile(expression)
    except exceptions.JMESPathError as exc:
        raise CliError(f"argument --query: invalid JMESPath {expression!r}: {_jmespath_reason(exc)}", Exit.USAGE)


def apply_query(compiled: Any, data: Any) -> Any:
    from jmespath import exceptions

    try:
        return compiled.search(data)
    except exceptions.JMESPathError as exc:
        raise CliError(
            f"argument --query: {_jmespath_reason(exc)} (the query is applied to the JSON that -o json prints)",
            Exit.USAGE,
        ) from None


def _jmespath_reason(exc: Exception) -> str:
    return " ".join(str(exc).split())


# --- rendering -------------------------------------------------------------------------------------------


def render(data: Any, fmt: str, out: IO[str], *, table: Callable[[Any], tuple | None] | None = None) -> None:
    """Write `data` to `out` in format `fmt`. `table(data)` may return (headers, rows, numeric) to lay it out."""
    if fmt == "json":
        out.write(to_json(data) + "\n")
    elif fmt == "jsonc":
        out.write((colour_json(data) if use_colour(out) else to_json(data)) + "\n")
    elif fmt == "yaml":
        import yaml

        if data is None or data == [] or data == {}:
            out.write(yaml.safe_dump(data) if data is not None else "null\n")
        else:
            out.write(yaml.safe_dump(data, sort_keys=False, allow_unicode=True, default_flow_style=False))
    elif fmt == "tsv":
        for line in tsv_lines(data):
            out.write(line + "\n")
    elif fmt == "table":
        layout = table(data) if table is not None else None
        headers, rows, numeric = layout if layout is not None else generic_table(data)
        for line in table_lines(headers, rows, numeric):
            out.write(line + "\n")
    else:  # argparse limits the choices; a new format must be added here
        raise CliError(f"unknown output format {fmt!r}; use one of {', '.join(FORMATS)}", Exit.USAGE)


def to_json(data: Any) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False, default=str)


def use_colour(out: IO[str]) -> bool:
    return not os.environ.get("NO_COLOR") and hasattr(out, "isatty") and out.isatty()


_KEY, _STR, _NUM, _LIT, _RESET = "\x1b[34;1m", "\x1b[32m", "\x1b[36m", "\x1b[35m", "\x1b[0m"


def colour_json(data: Any, indent: int = 0) -> str:
    """JSON like to_json, with ANSI colours: keys blue, strings green, numbers cyan, true/false/null magenta."""
    pad, inner = "  " * indent, "  " * (indent + 1)
    if isinstance(data, dict):
        if not data:
            return "{}"
        items = [
            f"{inner}{_KEY}{json.dumps(str(k), ensure_ascii=False)}{_RESET}: {colour_json(v, indent + 1)}"
            for k, v in data.items()
        ]
        return "{\n" + ",\n".join(items) + f"\n{pad}}}"
    if isinstance(data, list | tuple):
        if not data:
            return "[]"
        return "[\n" + ",\n".join(f"{inner}{colour_json(v, indent + 1)}" for v in data) + f"\n{pad}]"
    if isinstance(data, str):
        return f"{_STR}{json.dumps(data, ensure_ascii=False)}{_RESET}"
    if data is None or isinstance(data, bool):
        return f"{_LIT}{json.dumps(data)}{_RESET}"
    if isinstance(data, int | float):
        return f"{_NUM}{json.dumps(data)}{_RESET}"
    return f"{_STR}{json.dumps(str(data), ensure_ascii=False)}{_RESET}"


# --- tsv -------------------------------------------------------------------------------------------------------


def tsv_lines(data: Any) -> list[str]:
    if data is None:
        return []
    items = data if isinstance(data, list) else [data]
    lines = []
    for item in items:
        if isinstance(item, dict):
            lines.append("\t".join(tsv_cell(v) for v in item.values()))
        elif isinstance(item, list):
            lines.append("\t".join(tsv_cell(v) for v in item))
        else:
            lines.append(tsv_cell(item))
    return lines


def tsv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):  # compact JSON holds no raw tab or newline; it stays parseable
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    text = str(value)
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


# --- table ------------------------------------------------------------------------------------------------------


def summarise(value: Any) -> str:
    """A short one-line form of a cell: k=v pairs for objects, comma-joined lists, '' for null."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return ", ".join(k if v is None else f"{k}={summarise(v)}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(summarise(v) for v in value)
    return " ".join(str(value).split())


def generic_table(data: Any) -> tuple[list[str], list[list[str]], set[int]]:
    """Headers, rows and numeric columns for any JSON result (az's table output, in spirit)."""
    if data is None:
        return [], [], set()
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list):
        return ["Result"], [[summarise(data)]], set()
    if data and all(isinstance(item, dict) for item in data):
        keys: list[str] = []
        for item in data:
            keys.extend(k for k in item if k not in keys)
        rows = [[summarise(item.get(k)) for k in keys] for item in data]
        numeric = {
            i
            for i, k in enumerate(keys)
            if any(item.get(k) is not None for item in data)
            and all(_is_number(item.get(k)) or item.get(k) is None for item in data)
        }
        return [_title(k) for k in keys], rows, numeric
    if data and all(isinstance(item, list) for item in data):
        width = max(len(item) for item in data)
        rows = [[summarise(v) for v in item] + [""] * (width - len(item)) for item in data]
        return [f"Column{i + 1}" for i in range(width)], rows, set()
    numeric = {0} if data and all(_is_number(v) for v in data) else set()
    return ["Result"], [[summarise(item)] for item in data], numeric


def table_lines(headers: Sequence[str], rows: Sequence[Sequence[str]], numeric: set[int] | None = None) -> list[str]:
    """Aligned columns: a header, a dashed rule, then the rows; numbers right-aligned."""
    if not headers:
        return []
    numeric = numeric or set()
    cells = [[cut(str(c)) for c in row] for row in rows]
    widths = [max([display_width(h)] + [display_width(row[i]) for row in cells]) for i, h in enumerate(headers)]
    lines = [_join([pad(h, widths[i], i in numeric) for i, h in enumerate(headers)])]
    lines.append(_join(["-" * w for w in widths]))
    for row in cells:
        lines.append(_join([pad(c, widths[i], i in numeric) for i, c in enumerate(row)]))
    return lines


def _join(cells: list[str]) -> str:
    return "  ".join(cells).rstrip()


def cut(text: str, limit: int = CELL_MAX) -> str:
    if display_width(text) <= limit:
        return text
    out, width = [], 0
    for ch in text:
        w = _char_width(ch)
        if width + w > limit - 1:
            break
        out.append(ch)
        width += w
    return "".join(out) + "…"


def pad(text: str, width: int, right: bool = False) -> str:
    space = " " * (width - display_width(text))
    return space + text if right else text + space


def display_width(text: str) -> int:
    """Terminal columns taken by `text` (wide East Asian characters take two; tags may be Japanese)."""
    return sum(_char_width(ch) for ch in text)


def _char_width(ch: str) -> int:
    if unicodedata.combining(ch):
        return 0
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _title(key: str) -> str:
    return key[:1].upper() + key[1:]


def write_err(message: str) -> None:
    sys.stderr.write(message + "\n")
    sys.stderr.flush()
