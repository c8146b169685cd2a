"""Small derived values shown by both the API and the pages."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.utils import timezone

from runs.lifecycle import ACTIVE, Status


def run_duration(run, now: datetime | None = None) -> timedelta | None:
    """Wall time from start to end, or to now while the run is active."""
    if run.started_at is None:
        return None
    if run.ended_at is not None:
        return run.ended_at - run.started_at
    if run.status in ACTIVE:
        return (now or timezone.now()) - run.started_at
    return None


def format_duration(delta: timedelta | None) -> str:
    if delta is None:
        return "—"
    seconds = int(delta.total_seconds())
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m {seconds:02d}s"
    if minutes:
        return f"{minutes}m {seconds:02d}s"
    return f"{seconds}s"


STATUS_TONE = {
    Status.COMPLETED: "ok",
    Status.FAILED: "bad",
    Status.CANCELED: "muted",
    Status.CANCEL_REQUESTED: "warn",
    Status.NOT_RESPONDING: "bad",
    Status.RUNNING: "live",
    Status.FINALIZING: "live",
}


def status_tone(status: str) -> str:
    return STATUS_TONE.get(status, "wait")
