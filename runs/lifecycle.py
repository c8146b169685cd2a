"""Run statuses and the transitions between them: the single source of truth.

Every status change goes through `runs.services.runs.transition`, which checks
`can_transition` and applies the change with a compare-and-swap.
"""

from __future__ import annotations

from django.db import models


class Status(models.TextChoices):
    NOT_STARTED = "NotStarted"
    QUEUED = "Queued"
    PREPARING = "Preparing"
    STARTING = "Starting"
    RUNNING = "Running"
    FINALIZING = "Finalizing"
    CANCEL_REQUESTED = "CancelRequested"
    CANCELED = "Canceled"
    COMPLETED = "Completed"
    FAILED = "Failed"
    NOT_RESPONDING = "NotResponding"


S = Status
TERMINAL: frozenset[str] = frozenset({S.COMPLETED, S.FAILED, S.CANCELED})
ACTIVE: frozenset[str] = frozenset(set(S.values) - TERMINAL)
# Statuses in which a submitted run holds a slot on its compute target.
OCCUPYING: frozenset[str] = frozenset(
    {S.PREPARING, S.STARTING, S.RUNNING, S.FINALIZING, S.CANCEL_REQUESTED, S.NOT_RESPONDING}
)
# Before a runner exists: cancelling here ends the run at once, it never starts.
NOT_YET_DISPATCHED: frozenset[str] = frozenset({S.NOT_STARTED, S.QUEUED})

_ALLOWED: dict[str, frozenset[str]] = {
    S.NOT_STARTED: frozenset({S.QUEUED, S.STARTING, S.RUNNING, S.COMPLETED, S.FAILED, S.CANCELED}),
    S.QUEUED: frozenset({S.PREPARING, S.FAILED, S.CANCELED}),
    S.PREPARING: frozenset({S.STARTING, S.RUNNING, S.CANCEL_REQUESTED, S.FAILED, S.NOT_RESPONDING}),
    S.STARTING: frozenset({S.RUNNING, S.CANCEL_REQUESTED, S.FAILED, S.NOT_RESPONDING}),
    S.RUNNING: frozenset({S.FINALIZING, S.COMPLETED, S.FAILED, S.CANCEL_REQUESTED, S.CANCELED, S.NOT_RESPONDING}),
    S.FINALIZING: frozenset({S.COMPLETED, S.FAILED, S.CANCELED, S.NOT_RESPONDING}),
    S.CANCEL_REQUESTED: frozenset({S.FINALIZING, S.CANCELED, S.FAILED, S.NOT_RESPONDING}),
    S.NOT_RESPONDING: frozenset({S.RUNNING, S.FINALIZING, S.CANCEL_REQUESTED, S.COMPLETED, S.FAILED, S.CANCELED}),
    # Terminal statuses are final, with the one exception the how-to names:
    # fail() on a Completed run ("it finished, but with the wrong script").
    S.COMPLETED: frozenset({S.FAILED}),
    S.FAILED: frozenset(),
    S.CANCELED: frozenset(),
}


def can_transition(current: str, target: str) -> bool:
    return target in _ALLOWED.get(current, frozenset())


def is_terminal(status: str) -> bool:
    return status in TERMINAL


def is_active(status: str) -> bool:
    return status in ACTIVE


class IllegalTransition(Exception):
    """A status change the lifecycle does not allow (HTTP 409)."""

    def __init__(self, run_id: str, current: str, target: str, hint: str = ""):
        self.run_id, self.current, self.target = run_id, current, target
        message = f"run {run_id} is {current}; it cannot become {target}"
        if current in TERMINAL and not hint:
            hint = f"{current} is a final status"
        super().__init__(f"{message} ({hint})" if hint else message)
