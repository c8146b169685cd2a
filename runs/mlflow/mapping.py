"""How Run Studio's objects look to an MLflow client, and back.

- experiment id: the experiment's primary key as a string; a workspace's
  "Default" experiment is MLflow's experiment "0".
- run: run_id, run_name (display name, else the run id), status (RUNNING,
  SCHEDULED, FINISHED, FAILED, KILLED), start/end times in epoch milliseconds,
  lifecycle_stage "deleted" for soft-deleted runs.
- params are properties, tags are tags; three MLflow tags are fields here:
  mlflow.runName (display name), mlflow.note.content (description) and
  mlflow.parentRunId (the parent run).
- metrics: the scalar series the studio charts; the newest point is the
  "latest" value MLflow returns with a run.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

from runs.lifecycle import Status
from runs.models import Experiment
from runs.services.mlflow_support import DEFAULT_EXPERIMENT

DEFAULT_EXPERIMENT_ID = "0"
DEFAULT_EXPERIMENT_NAME = DEFAULT_EXPERIMENT

RUN_NAME_TAG = "mlflow.runName"
NOTE_TAG = "mlflow.note.content"
PARENT_TAG = "mlflow.parentRunId"
RESERVED_TAGS = frozenset({RUN_NAME_TAG, NOTE_TAG, PARENT_TAG})

RUNNING, SCHEDULED, FINISHED, FAILED, KILLED = "RUNNING", "SCHEDULED", "FINISHED", "FAILED", "KILLED"
MLFLOW_STATUSES = (RUNNING, SCHEDULED, FINISHED, FAILED, KILLED)

TO_MLFLOW_STATUS: dict[str, str] = {
    Status.NOT_STARTED: SCHEDULED,
    Status.QUEUED: SCHEDULED,
    Status.PREPARING: RUNNING,
    Status.STARTING: RUNNING,
    Status.RUNNING: RUNNING,
    Status.FINALIZING: RUNNING,
    Status.CANCEL_REQUESTED: RUNNING,  # still executing until its runner reports Canceled
    Status.NOT_RESPONDING: RUNNING,
    Status.COMPLETED: FINISHED,
    Status.FAILED: FAILED,
    Status.CANCELED: KILLED,
}
# The proto enum's numbers, which some clients send instead of names.
STATUS_NUMBERS = {1: RUNNING, 2: SCHEDULED, 3: FINISHED, 4: FAILED, 5: KILLED}

ACTIVE_ONLY, DELETED_ONLY, ALL = 1, 2, 3
VIEW_TYPES = {"ACTIVE_ONLY": ACTIVE_ONLY, "DELETED_ONLY": DELETED_ONLY, "ALL": ALL}


def studio_statuses(mlflow_statuses: set[str]) -> list[str]:
    """Our statuses that show as any of the given MLflow statuses."""
    return [ours for ours, theirs in TO_MLFLOW_STATUS.items() if theirs in mlflow_statuses]


def ms(value: datetime | None) -> int | None:
    if value is None:
        return None
    return int(value.timestamp() * 1000)


def from_ms(value: int) -> datetime:
    return datetime.fromtimestamp(value / 1000, tz=UTC)


def metric_value(value: float) -> float | str:
    """A double as protobuf's JSON writes it: NaN and infinities as strings."""
    if math.isfinite(value):
        return value
    if math.isnan(value):
        return "NaN"
    return "Infinity" if value > 0 else "-Infinity"


def experiment_id(experiment_pk: int, name: str) -> str:
    return DEFAULT_EXPERIMENT_ID if name == DEFAULT_EXPERIMENT_NAME else str(experiment_pk)


def artifact_uri(exp_id: str, run_id: str) -> str:
    """Served by this server's mlflow-artifacts proxy (runs.mlflow.views.artifact); files land in the run."""
    return f"mlflow-artifacts:/{exp_id}/{run_id}/artifacts"


def experiment_json(experiment: Experiment) -> dict:
    exp_id = experiment_id(experiment.pk, experiment.name)
    out = {
        "experiment_id": exp_id,
        "name": experiment.name,
        "artifact_location": f"mlflow-artifacts:/{exp_id}",
        "lifecycle_stage": "deleted" if experiment.archived_at else "active",
        "creation_time": ms(experiment.created_at),
        "last_update_time": ms(experiment.last_activity_at),
        "tags": [],
    }
    if experiment.description:
        out["tags"].append({"key": NOTE_TAG, "value": experiment.description})
    return out


# The columns run_json reads, for QuerySet.values(); one query builds a whole page.
RUN_VALUES = (
    "pk",
    "run_id",
    "display_name",
    "description",
    "status",
    "experiment_id",
    "experiment__name",
    "submitted_by__username",
    "parent__run_id",
    "mlflow_started",  # started, else created (runs.mlflow.queries.run_payloads annotates these two)
    "mlflow_deleted",
    "ended_at",
)


def run_info(row: dict) -> dict:
    exp_id = experiment_id(row["experiment_id"], row["experiment__name"])
    info = {
        "run_id": row["run_id"],
        "run_uuid": row["run_id"],
        "run_name": row["display_name"] or row["run_id"],
        "experiment_id": exp_id,
        "user_id": row["submitted_by__username"] or "",
        "status": TO_MLFLOW_STATUS.get(row["status"], RUNNING),
        "start_time": ms(row["mlflow_started"]),
        "artifact_uri": artifact_uri(exp_id, row["run_id"]),
        "lifecycle_stage": "deleted" if row["mlflow_deleted"] else "active",
    }
    if row["ended_at"] is not None:
        info["end_time"] = ms(row["ended_at"])
    return info


def _pair(key: str, value: str | None) -> dict:
    return {"key": key} if value is None else {"key": key, "value": value}


def run_json(row: dict, tags: list[tuple[str, str | None]], params: list[tuple[str, str | None]], metrics: list[dict]):
    """A Run message: info, data (latest metrics, params, tags) and empty inputs/outputs."""
    tag_list = [_pair(k, v) for k, v in tags]
    if row["display_name"]:
        tag_list.append({"key": RUN_NAME_TAG, "value": row["display_name"]})
    if row["description"]:
        tag_list.append({"key": NOTE_TAG, "value": row["description"]})
    if row["parent__run_id"]:
        tag_list.append({"key": PARENT_TAG, "value": row["parent__run_id"]})
    return {
        "info": run_info(row),
        "data": {"metrics": metrics, "params": [_pair(k, v) for k, v in params], "tags": tag_list},
        "inputs": {},
        "outputs": {},
    }


def latest_metric(
    name: str, last_value: float | None, last_json: object, last_step: int | None, updated_at
) -> dict | None:
    """A series' newest point as MLflow's latest metric, or None when it is not a number.

    The series keeps its newest value and step but not the point's own time;
    the time the series last received points stands in for it.
    """
    if last_value is not None:
        value: float | str = last_value
    elif isinstance(last_json, dict) and last_json.get("$float") in ("NaN", "Infinity", "-Infinity"):
        value = last_json["$float"]
    else:
        return None  # text or null values are not MLflow metrics
    return {"key": name, "value": value, "timestamp": ms(updated_at), "step": last_step or 0}
