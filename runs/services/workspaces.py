"""Workspaces, memberships, experiments, compute targets and API tokens."""

from __future__ import annotations

import re

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from runs import limits, tokens
from runs.access import Principal
from runs.errors import Conflict, Forbidden, InvalidInput
from runs.lifecycle import ACTIVE
from runs.models import ApiToken, ComputeTarget, Experiment, Membership, Run, Workspace
from runs.models.compute import COMPUTE_NAME_RE
from runs.models.experiments import EXPERIMENT_NAME_RE
from runs.models.workspaces import WORKSPACE_NAME_RE
from runs.tokens import hash_key, new_user_key

DEFAULT_TARGET = "local"


def workspace_create(name: str, owner, *, description: str = "") -> Workspace:
    """Create a workspace owned by `owner`, with the default `local` compute target."""
    if not isinstance(name, str) or not re.fullmatch(WORKSPACE_NAME_RE, name):
        raise InvalidInput("workspace name must be 3-33 letters, digits, '-' or '_'", field="name")
    try:
        with transaction.atomic():
            workspace = Workspace.objects.create(name=name, description=description)
            Membership.objects.create(workspace=workspace, user=owner, role=Membership.Role.OWNER)
            ComputeTarget.objects.create(
                workspace=workspace, name=DEFAULT_TARGET, description="processes on the worker's host"
            )
    except IntegrityError:
        raise Conflict(f"workspace '{name}' already exists") from None
    return workspace


def member_add(workspace: Workspace, user, role: str = Membership.Role.MEMBER) -> Membership:
    membership, _ = Membership.objects.get_or_create(workspace=workspace, user=user, defaults={"role": role})
    return membership


def experiment_get_or_create(principal: Principal, workspace: Workspace, name: object) -> tuple[Experiment, bool]:
    """Experiment(ws, name): the experiment, created if missing. Returns (experiment, created)."""
    if not isinstance(name, str) or not re.fullmatch(EXPERIMENT_NAME_RE, name):
        raise InvalidInput(
            "experiment name must be 1-255 letters, digits, '_' or '-', starting with a letter or digit",
            field="name",
        )
    existing = Experiment.objects.filter(workspace=workspace, name=name).first()
    if existing:
        if principal.run is not None and existing.pk != principal.run.experiment_id:
            raise Forbidden("a run token may use only its own run's experiment")
        return existing, False
    if principal.run is not None:
        raise Forbidden("a run token cannot create experiments")
    try:
        with transaction.atomic():
            return Experiment.objects.create(workspace=workspace, name=name), True
    except IntegrityError:
        return Experiment.objects.get(workspace=workspace, name=name), False


def _require_user(principal: Principal, what: str) -> None:
    if principal.run is not None:
        raise Forbidden(f"a run token cannot {what}")


def compute_target_create(principal: Principal, workspace: Workspace, data: dict) -> ComputeTarget:
    """Register a compute target. Raises InvalidInput or Conflict (name taken)."""
    _require_user(principal, "register compute targets")
    target = ComputeTarget(workspace=workspace)
    _apply_target_fields(target, data, creating=True)
    try:
        with transaction.atomic():
            target.save()
    except IntegrityError:
        raise Conflict(f"compute target '{target.name}' already exists in workspace '{workspace.name}'") from None
    return target


def compute_target_update(principal: Principal, target: ComputeTarget, data: dict) -> ComputeTarget:
    _require_user(principal, "change compute targets")
    _apply_target_fields(target, data, creating=False)
    target.save()
    return target


def _apply_target_fields(target: ComputeTarget, data: dict, *, creating: bool) -> None:
    if creating:
        name = data.get("name")
        if not isinstance(name, str) or not re.fullmatch(COMPUTE_NAME_RE, name):
            raise InvalidInput(
                "name must be 2-32 letters, digits or '-', starting with a letter or digit", field="name"
            )
        target.name = name
    elif "name" in data and data["name"] != target.name:
        raise InvalidInput("a compute target cannot be renamed; register a new one", field="name")
    if "kind" in data:
        if data["kind"] not in ComputeTarget.Kind.values:
            raise InvalidInput(f"kind must be one of: {', '.join(ComputeTarget.Kind.values)}", field="kind")
        target.kind = data["kind"]
    if "max_concurrent_runs" in data:
        value = data["max_concurrent_runs"]
        if not limits.is_int(value) or not 1 <= value <= 10_000:
            raise InvalidInput("max_concurrent_runs must be an integer from 1 to 10000", field="max_concurrent_runs")
        target.max_concurrent_runs = value
    if "description" in data:
        if not isinstance(data["description"], str) or len(data["description"]) > 2000:
            raise InvalidInput("description must be a string of at most 2000 characters", field="description")
        target.description = data["description"]
    try:
        target.full_clean(exclude=["workspace"], validate_unique=False, validate_constraints=False)
    except ValidationError as exc:
        raise InvalidInput("; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items())) from None


def compute_target_delete(principal: Principal, target: ComputeTarget) -> None:
    """Delete a target that no active run uses. Raises Conflict otherwise."""
    _require_user(principal, "delete compute targets")
    if target.name == DEFAULT_TARGET:
        raise Conflict("the default 'local' target cannot be deleted")
    active = Run.objects.filter(
        experiment__workspace=target.workspace, compute_target=target.name, status__in=ACTIVE
    ).count()
    if active:
        raise Conflict(f"compute target '{target.name}' has {active} active runs; cancel them or wait, then delete it")
    target.delete()


def token_create(user, name: str) -> tuple[ApiToken, str]:
    """Create an API token for `user`; returns (token, key). The key is shown once."""
    name = (name or "").strip() or "API token"
    if len(name) > 100:
        raise InvalidInput("token name must be at most 100 characters", field="name")
    key = new_user_key()
    token = ApiToken.objects.create(user=user, name=name, key_hash=hash_key(key), prefix=key[:10])
    return token, key


def token_revoke(user, token_id: int) -> ApiToken:
    token = ApiToken.objects.filter(user=user, pk=token_id).first()
    if token is None:
        from runs.errors import NotFound

        raise NotFound("no such token")
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
        tokens.forget_cached_tokens()
    return token
