"""What the CLI prints: the studio's JSON (snake_case) as az-style records (camelCase), and their tables.

Every run record has the same keys in the same order, null included, so -o
tsv columns line up from one run to the next and --query can rely on them;
`tags` and `properties` are always objects.
"""

from __future__ import annotations

from typing import Any

from runs.cli.output import summarise
from runs.sdk._details import v1_type

MINIMAL_KEYS = ("runId", "runType", "status", "startTimeUtc", "endTimeUtc", "target", "tags")


def run_record(dto: dict) -> dict[str, Any]:
    """A run as `studio run list` prints it."""
    return {
        "runId": dto["run_id"],
        "number": dto.get("number"),
        "displayName": dto.get("display_name") or None,
        "status": dto.get("status"),
        "runType": v1_type(dto),
        "experimentName": dto.get("experiment"),
        "parentRunId": dto.get("parent_run_id"),
        "target": dto.get("compute_target"),
        "submittedBy": dto.get("submitted_by"),
        "createdTimeUtc": dto.get("created_utc"),
        "startTimeUtc": dto.get("start_time_utc"),
        "endTimeUtc": dto.get("end_time_utc"),
        "durationSeconds": dto.get("duration_seconds"),
        "description": dto.get("description") or None,
        "tags": dict(dto.get("tags") or {}),
        "properties": dict(dto.get("properties") or {}),
    }


def minimal_run_record(dto: dict) -> dict[str, Any]:
    """`run list --minimal`: az's short form (RunId, RunType, Status, StartTime, EndTime, Target, Tags)."""
    record = run_record(dto)
    return {key: record[key] for key in MINIMAL_KEYS}


def run_detail_record(dto: dict, portal_url: str) -> dict[str, Any]:
    """A run as `studio run show` prints it: the list record plus definition, logs, error and links."""
    return {
        **run_record(dto),
        "exitCode": dto.get("exit_code"),
        "error": dto.get("error"),
        "warnings": dto.get("warnings") or [],
        "rootRunId": dto.get("root_run_id"),
        "runDefinition": dto.get("run_definition") or {},
        "logFiles": list(dto.get("log_files") or []),
        "portalUrl": portal_url,
    }


def experiment_record(dto: dict) -> dict[str, Any]:
    return {
        "name": dto["name"],
        "workspace": dto.get("workspace"),
        "runCount": dto.get("run_count"),
        "createdTimeUtc": dto.get("created_at"),
        "lastActivityTimeUtc": dto.get("last_activity_at"),
        "description": dto.get("description") or None,
    }


def compute_record(dto: dict) -> dict[str, Any]:
    return {
        "name": dto["name"],
        "workspace": dto.get("workspace"),
        "kind": dto.get("kind"),
        "maxConcurrentRuns": dto.get("max_concurrent_runs"),
        "description": dto.get("description") or None,
        "createdTimeUtc": dto.get("created_at"),
    }


# --- tables ------------------------------------------------------------------------------------------------


def _is_run(item: Any) -> bool:
    return isinstance(item, dict) and "runId" in item and "status" in item


def runs_table(data: Any) -> tuple[list[str], list[list[str]], set[int]] | None:
    """The runs layout, for a run or a list of runs (also after a filtering --query); None otherwise."""
    items = [data] if _is_run(data) else data
    if not isinstance(items, list) or not items or not all(_is_run(item) for item in items):
        return None
    experiments = {item.get("experimentName") for item in items}
    show_experiment = len(experiments) > 1
    headers = ["RunId", "Number", "Status", "Target", "StartTime (UTC)", "Duration", "Tags"]
    if show_experiment:
        headers.insert(1, "Experiment")
    rows = []
    for item in items:
        row = [
            str(item["runId"]),
            "" if item.get("number") is None else str(item["number"]),
            str(item.get("status") or ""),
            str(item.get("target") or ""),
            short_time(item.get("startTimeUtc")),
            duration(item.get("durationSeconds")),
            summarise(item.get("tags") or {}),
        ]
        if show_experiment:
            row.insert(1, str(item.get("experimentName") or ""))
        rows.append(row)
    numeric = {headers.index("Number"), headers.index("Duration")}
    return headers, rows, numeric


def short_time(value: Any) -> str:
    """'2025-03-01T10:11:12.345678Z' → '2025-03-01 10:11:12' (the header says UTC)."""
    if not value:
        return ""
    text = str(value).replace("T", " ")
    return text.split(".")[0].removesuffix("Z")


def duration(seconds: Any) -> str:
    """Seconds → H:MM:SS ('' when unknown)."""
    if seconds is None:
        return ""
    total = int(float(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


def experiments_table(data: Any) -> tuple[list[str], list[list[str]], set[int]] | None:
    if not isinstance(data, list) or not all(isinstance(i, dict) and "runCount" in i for i in data):
        return None
    headers = ["Name", "Runs", "LastActivity (UTC)", "Created (UTC)", "Description"]
    rows = [
        [
            str(item.get("name") or ""),
            "" if item.get("runCount") is None else str(item["runCount"]),
            short_time(item.get("lastActivityTimeUtc")),
            short_time(item.get("createdTimeUtc")),
            summarise(item.get("description")),
        ]
        for item in data
    ]
    return headers, rows, {1}


def computes_table(data: Any) -> tuple[list[str], list[list[str]], set[int]] | None:
    items = [data] if isinstance(data, dict) else data
    if not isinstance(items, list) or not all(isinstance(i, dict) and "maxConcurrentRuns" in i for i in items):
        return None
    headers = ["Name", "Kind", "MaxConcurrentRuns", "Description"]
    rows = [
        [
            str(item.get("name") or ""),
            str(item.get("kind") or ""),
            "" if item.get("maxConcurrentRuns") is None else str(item["maxConcurrentRuns"]),
            summarise(item.get("description")),
        ]
        for item in items
    ]
    return headers, rows, {2}
