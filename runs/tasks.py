"""Celery tasks: thin wrappers that take ids and call one service."""

from __future__ import annotations

from celery import shared_task

from runs.compute import local
from runs.services import execution


@shared_task(acks_late=True, ignore_result=True)
def dispatch_run(run_pk: int) -> None:
    """On the target's queue: claim the run and start its runner on this host."""
    local.dispatch(run_pk)


@shared_task(ignore_result=True)
def poll_runs() -> dict:
    """Periodic (beat): reconcile silent runs, dispatch queued runs that fit."""
    return execution.poll_runs()
