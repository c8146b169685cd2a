"""Writes and lookups that the MLflow-compatible API needs and the rest of the studio did not.

Soft deletion of runs (MLflow's delete/restore), archiving and renaming
experiments, the workspace a caller means when the request names none, and the
"Default" experiment MLflow clients log to when no experiment is set. Every
other MLflow operation maps onto runs.services.runs / metrics / files directly.
"""

from __future__ import annotations

import re

from django.db import IntegrityError, transaction
from django.utils import timezone

from runs import limits, selectors
from runs.access import Principal
from runs.errors import Conflict, Forbidden, InvalidInput, NotFound
from runs.models import Experiment, Membership, Run, Workspace
from runs.models.experiments import EXPERIMENT_NAME_RE
from runs.services import workspaces

DEFAULT_EXPERIMENT = "Default"


def _require_user(principal: Principal, what: str) -> None:
    if principal.run is not None:
        raise Forbidden(f"a run token cannot {what}")


# --- workspaces --------------------------------------------------------------------------------------


def default_workspace(principal: Principal) -> Workspace:
    """The workspace a request that names none refers to.

    A run token: its run's workspace. A user: the workspace they joined first
    (their only one, for most users), so the choice does not change when they
    are later added to other teams. Raises NotFound for a user in no workspace.
    """
    if principal.run is not None:
        return selectors.workspaces_visible(principal).get()
    membership = (
        Membership.objects.filter(user=principal.user, workspace__in=selectors.workspaces_visible(principal))
        .select_related("workspace")
        .order_by("created_at", "pk")
        .first()
    )
    if membership is None:
        raise NotFound(f"user '{principal.user.username}' is not a member of any workspace; ask an owner to add you")
    return membership.workspace


# --- experiments ---------------------------------------------------------------------------------------


def experiment_default(principal: Principal, workspace: Workspace) -> Experiment:
    """The workspace's "Default" experiment (MLflow's experiment 0), created on first use."""
    return workspaces.experiment_get_or_create(principal, workspace, DEFAULT_EXPERIMENT)[0]


def experiment_archive(principal: Principal, experiment: Experiment) -> Experiment:
    """Archive (MLflow: delete) an experiment; its runs are kept. Archiving twice is harmless.

    Raises Forbidden for run tokens, InvalidInput for the Default experiment,
    which MLflow clients fall back to and so must always exist.
    """
    _require_user(principal, "delete experiments")
    if experiment.name == DEFAULT_EXPERIMENT:
        raise InvalidInput(f"the '{DEFAULT_EXPERIMENT}' experiment cannot be deleted; MLflow clients log to it")
    if experiment.archived_at is None:
        experiment.archived_at = timezone.now()
        Experiment.objects.filter(pk=experiment.pk).update(archived_at=experiment.archived_at)
    return experiment


def experiment_restore(principal: Principal, experiment: Experiment) -> Experiment:
    """Undo experiment_archive. Restoring an active experiment is harmless."""
    _require_user(principal, "restore experiments")
    if experiment.archived_at is not None:
        experiment.archived_at = None
        Experiment.objects.filter(pk=experiment.pk).update(archived_at=None)
    return experiment


def experiment_rename(principal: Principal, experiment: Experiment, name: object) -> Experiment:
    """Rename an experiment within its workspace.

    Raises Forbidden (run token), InvalidInput (bad name, or renaming the
    Default experiment, which MLflow clients find by name), Conflict (taken).
    """
    _require_user(principal, "rename experiments")
    if not isinstance(name, str) or not re.fullmatch(EXPERIMENT_NAME_RE, name):
        raise InvalidInput(
            "experiment name must be 1-255 letters, digits, '_' or '-', starting with a letter or digit",
            field="name",
        )
    if experiment.name == DEFAULT_EXPERIMENT and name != DEFAULT_EXPERIMENT:
        raise InvalidInput(f"the '{DEFAULT_EXPERIMENT}' experiment cannot be renamed; MLflow clients log to it")
    if name == experiment.name:
        return experiment
    try:
        with transaction.atomic():
            Experiment.objects.filter(pk=experiment.pk).update(name=name)
    except IntegrityError:
        raise Conflict(f"experiment '{name}' already exists in workspace '{experiment.workspace.name}'") from None
    experiment.name = name
    return experiment


def experiment_describe(principal: Principal, experiment: Experiment, description: object) -> Experiment:
    """Set an experiment's description (MLflow's experiment tag mlflow.note.content)."""
    _require_user(principal, "change experiments")
    text = limits.check_text(description, "description", limits.DESCRIPTION_MAX)
    Experiment.objects.filter(pk=experiment.pk).update(description=text)
    experiment.description = text
    return experiment


# --- runs ------------------------------------------------------------------------------------------------


def run_soft_delete(principal: Principal, run: Run) -> Run:
    """Hide a run from lists (MLflow's delete_run); nothing is erased and run_restore brings it back.

    The caller must have looked the run up for writing. Deleting twice keeps
    the first deletion time.
    """
    if run.deleted_at is None:
        now = timezone.now()
        Run.objects.filter(pk=run.pk, deleted_at__isnull=True).update(deleted_at=now)
        run.deleted_at = now
    return run


def run_restore(principal: Principal, run: Run) -> Run:
    """Undo run_soft_delete. Restoring a run that is not deleted is harmless."""
    if run.deleted_at is not None:
        Run.objects.filter(pk=run.pk).update(deleted_at=None)
        run.deleted_at = None
    return run
