"""Small display helpers for the studio templates: badges, times, durations, state URLs."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

from django import template
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape, format_html
from django.utils.safestring import mark_safe

from runs.forms import TableState
from runs.presenters import format_duration, run_duration, status_tone

register = template.Library()

_WORDS = re.compile(r"(?<=[a-z])(?=[A-Z])")


@register.filter
def status_label(status: str) -> str:
    """'CancelRequested' → 'Cancel requested' (what people read; the API keeps the v1 names)."""
    words = _WORDS.split(status or "")
    return " ".join([words[0], *(w.lower() for w in words[1:])]) if words else ""


@register.simple_tag
def status_badge(status: str):
    # The text says the status; the colour and the shape only repeat it (not colour alone).
    return format_html(
        '<span class="badge badge-{}" data-status="{}"><span class="badge-dot" aria-hidden="true"></span>{}</span>',
        status_tone(status),
        status,
        status_label(status),
    )


@register.simple_tag
def when(value: datetime | None):
    if value is None:
        return mark_safe('<span class="muted">—</span>')
    value = value.astimezone(UTC) if timezone.is_aware(value) else value
    return format_html(
        '<time datetime="{}" title="{} UTC">{}</time>',
        value.isoformat(),
        value.strftime("%Y-%m-%d %H:%M:%S"),
        value.strftime("%Y-%m-%d %H:%M"),
    )


@register.simple_tag
def duration_of(run):
    """The run's duration; while it runs, studio.js keeps it ticking from the rendered value."""
    delta = run_duration(run)
    text = format_duration(delta)
    if delta is not None and run.ended_at is None and run.status not in ("Completed", "Failed", "Canceled"):
        return format_html('<span class="duration" data-tick-base="{}">{}</span>', int(delta.total_seconds()), text)
    return format_html('<span class="duration">{}</span>', text)


@register.simple_tag
def state_query(state: TableState, **changes) -> str:
    """The page's query string with some of the state changed (paging restarts unless given)."""
    return state.with_(**changes).to_query()


@register.simple_tag
def sort_query(state: TableState, key: str) -> str:
    """Sorting by `key`: descending first, then ascending on a second click."""
    new = key if state.sort == f"-{key}" else f"-{key}"
    return state.with_(sort=new).to_query()


@register.simple_tag
def aria_sort(state: TableState, key: str) -> str:
    if state.sort_key != key:
        return "none"
    return "descending" if state.descending else "ascending"


@register.filter
def get_item(mapping, key):
    try:
        return mapping.get(key)
    except AttributeError:
        return None


@register.filter
def pretty_json(value) -> str:
    return json.dumps(value, indent=2, sort_keys=True, default=str, ensure_ascii=False)


@register.filter
def pair_text(pair) -> str:
    key, value = pair
    return key if value is None else f"{key}={value}"


def column_label(col: str) -> str:
    from runs.forms import BUILTIN_COLUMNS

    if col in BUILTIN_COLUMNS:
        return BUILTIN_COLUMNS[col]
    kind, _, name = col.partition(":")
    return {"m": f"{name} (last)", "p": f"{name} (property)", "t": f"{name} (tag)"}.get(kind, col)


register.filter("column_label", column_label)


@register.simple_tag
def column_header(state: TableState, col: str):
    """A <th> whose link sorts the table (keyboard-reachable); aria-sort says the current order."""
    from runs.forms import SORT_KEYS

    label = column_label(col)
    sortable = col in SORT_KEYS or col.startswith("m:")
    numeric = col in ("number", "duration") or col.startswith("m:")
    css = "num" if numeric else ""
    if not sortable:
        return format_html('<th scope="col" class="{}">{}</th>', css, label)
    query = sort_query(state, col)
    current = aria_sort(state, col)
    arrow = {"descending": "↓", "ascending": "↑"}.get(current, "")
    return format_html(
        '<th scope="col" class="{}" aria-sort="{}"><a href="?{}" hx-get="?{}" hx-target="#results" '
        'hx-swap="outerHTML">{}<span class="sort-arrow" aria-hidden="true">{}</span>'
        '<span class="visually-hidden">, sort</span></a></th>',
        css,
        current,
        query,
        query,
        label,
        arrow,
    )


@register.filter
def error_message(error) -> str:
    """The message of a run's error ({"error": {"message": ...}}), or the error as text."""
    if isinstance(error, dict):
        inner = error.get("error", error)
        if isinstance(inner, dict) and inner.get("message"):
            code = inner.get("code")
            return f"{code}: {inner['message']}" if code else str(inner["message"])
    return "" if error is None else str(error)


def _truncate(text: str, length: int) -> str:
    return text if len(text) <= length else text[: length - 1] + "…"


@register.simple_tag
def run_cells(run):
    """The <td> cells of one runs-table row, in the order of the page's columns.

    Built in Python with f-strings rather than a template per cell: a 50-row
    page has hundreds of cells, and this keeps the experiment page's server
    time low. Every user-supplied value goes through escape().
    """
    url = reverse("runs:run", args=[run.run_id])
    cells = []
    for cell in run.cells:
        kind = cell.kind
        if kind == "number":
            cells.append(f'<td class="num"><a href="{escape(url)}">{run.number}</a></td>')
        elif kind == "name":
            chip = ' <span class="chip">child</span>' if run.depth else ""
            label = escape(_truncate(run.display_name or run.run_id, 60))
            cells.append(f'<td class="name"><a href="{escape(url)}">{label}</a>{chip}</td>')
        elif kind == "status":
            cells.append(f"<td>{status_badge(run.status)}</td>")
        elif kind == "duration":
            cells.append(f'<td class="num">{duration_of(run)}</td>')
        elif kind == "target":
            cells.append(f"<td>{escape(run.compute_target)}</td>")
        elif kind == "submitter":
            cells.append(f"<td>{escape(run.submitted_by.username) if run.submitted_by_id else '—'}</td>")
        elif kind == "started":
            cells.append(f"<td>{when(run.started_at)}</td>")
        elif kind == "created":
            cells.append(f"<td>{when(run.created_at)}</td>")
        elif kind == "description":
            cells.append(f'<td class="desc">{escape(_truncate(run.description, 80))}</td>')
        elif kind == "tags":
            chips = "".join(
                f'<span class="tag"><span class="tag-key">{escape(key)}</span>'
                + ("" if value is None else f'<span class="tag-val">{escape(_truncate(value, 40))}</span>')
                + "</span>"
                for key, value in run.tag_pairs[:6]
            )
            if len(run.tag_pairs) > 6:
                chips += f'<span class="muted small">+{len(run.tag_pairs) - 6}</span>'
            cells.append(f'<td class="tags">{chips}</td>')
        elif kind == "metric":
            cells.append(f'<td class="num">{escape(cell.value)}</td>')
        elif cell.extra:
            value = "(none)" if cell.value is None else _truncate(str(cell.value), 60)
            cells.append(f"<td>{escape(value)}</td>")
        else:
            cells.append('<td><span class="muted">—</span></td>')
    return mark_safe("".join(cells))  # every interpolated value above is escaped


@register.filter
def run_title(run) -> str:
    """What a run is called on its page: its display name, else its script, else its id."""
    script = (run.run_definition or {}).get("script") if isinstance(run.run_definition, dict) else None
    return run.display_name or script or run.run_id


@register.filter
def metric_value(value) -> str:
    """A metric's value for reading: floats to 6 significant digits, NaN/inf by name."""
    from runs.selectors_pages import metric_display

    return "—" if value is None else metric_display(value)
