"""The studio's run JSON (snake_case) → v1's get_details() dict (camelCase, None values left out)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

SUBMITTED_TYPE = "azureml.scriptrun"  # v1's run type of submitted scripts
RUN_TYPES = {"submitted": SUBMITTED_TYPE, "interactive": "interactive"}


def v1_type(dto: dict) -> str:
    return RUN_TYPES.get(dto.get("run_type") or "", dto.get("run_type") or "interactive")


def log_url(api_base: str, run_id: str, name: str) -> str:
    """Where a log's bytes are read: GET .../logs/content/?name=<name> (with the API token)."""
    return f"{api_base}/api/runs/{quote(run_id, safe='')}/logs/content/?name={quote(name, safe='/')}"


def details(dto: dict, api_base: str) -> dict[str, Any]:
    """get_details(): runId, target, status, startTimeUtc, endTimeUtc (absent while active), ...

    As in v1, keys whose value is None are left out, and so are empty
    display names, descriptions and warning lists, which v1 reports as absent.
    """
    run_id = dto["run_id"]
    out: dict[str, Any] = {
        "runId": run_id,
        "target": dto.get("compute_target"),
        "status": dto.get("status"),
        "startTimeUtc": dto.get("start_time_utc"),
        "endTimeUtc": dto.get("end_time_utc"),
        "createdTimeUtc": dto.get("created_utc"),
        "services": {},
        "properties": dict(dto.get("properties") or {}),
        "tags": dict(dto.get("tags") or {}),
        "inputDatasets": [],
        "outputDatasets": [],
        "runDefinition": dict(dto.get("run_definition") or {}),
        "logFiles": {name: log_url(api_base, run_id, name) for name in dto.get("log_files") or []},
        "submittedBy": dto.get("submitted_by"),
        "error": dto.get("error"),
        "warnings": dto.get("warnings") or None,
        "displayName": dto.get("display_name") or None,
        "description": dto.get("description") or None,
        "number": dto.get("number"),
        "runType": v1_type(dto),
        "experimentName": dto.get("experiment"),
        "parentRunId": dto.get("parent_run_id"),
        "rootRunId": dto.get("root_run_id"),
        "exitCode": dto.get("exit_code"),
        "durationSeconds": dto.get("duration_seconds"),
    }
    return {key: value for key, value in out.items() if value is not None}
