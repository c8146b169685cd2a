"""Reads, and the one place that decides who may see and change what.

Users see the workspaces they are members of. A run token (Principal.run) sees
its own run tree branch: the run and its descendants (read/write), its ancestors
(read), its experiment and its workspace's compute targets (read).
Anything outside a principal's view is "not found", so ids of other teams'
runs cannot be probed.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from django.db.models import Q, QuerySet

from runs.access import Principal
from runs.errors import Forbidden, InvalidInput, NotFound
from runs.lifecycle import Status
from runs.models import ComputeTarget, Experiment, Run, RunProperty, RunTag, Workspace

# --- visibility --------------------------------------------------------------------


def workspaces_visible(principal: Principal) -> QuerySet[Workspace]:
    if principal.run is not None:
        return Workspace.objects.filter(pk=principal.run.experiment.workspace_id)
    if not principal.user.is_authenticated:
        return Workspace.objects.none()
    return Workspace.objects.filter(memberships__user=principal.user)


def experiments_visible(principal: Principal) -> QuerySet[Experiment]:
    if principal.run is not None:
        return Experiment.objects.filter(pk=principal.run.experiment_id)
    return Experiment.objects.filter(workspace__in=workspaces_visible(principal))


def _run_token_subtree(run: Run) -> Q:
    return Q(pk=run.pk) | Q(root_id=run.tree_root_pk, path__startswith=run.path)


def runs_visible(principal: Principal, *, include_deleted: bool = False) -> QuerySet[Run]:
    if principal.run is not None:
        run = principal.run
        runs = Run.objects.filter(_run_token_subtree(run) | Q(pk__in=run.ancestor_pks))
    else:
        runs = Run.objects.filter(experiment__workspace__in=workspaces_visible(principal))
    return runs if include_deleted else runs.filter(deleted_at__isnull=True)


def _may_write(principal: Principal, run: Run) -> bool:
    token_run = principal.run
    if token_run is None:
        return True  # membership was already checked by runs_visible
    return run.pk == token_run.pk or (
        run.tree_root_pk == token_run.tree_root_pk and run.path.startswith(token_run.path)
    )


# --- lookups ---------------------------------------------------------------------------


def workspace_get(principal: Principal, name: str) -> Workspace:
    workspace = workspaces_visible(principal).filter(name=name).first()
    if workspace is None:
        raise NotFound(f"workspace '{name}' does not exist or you are not a member of it")
    return workspace


def experiment_get(principal: Principal, workspace: Workspace, name: str) -> Experiment:
    experiment = experiments_visible(principal).filter(workspace=workspace, name=name).first()
    if experiment is None:
        raise NotFound(f"experiment '{name}' does not exist in workspace '{workspace.name}'")
    return experiment


RUN_RELATED = ("experiment__workspace", "submitted_by", "parent")


def run_get(
    principal: Principal,
    run_id: str,
    *,
    for_write: bool = False,
    include_deleted: bool = False,
    related: tuple[str, ...] = RUN_RELATED,
) -> Run:
    """One run by id; soft-deleted runs only with include_deleted (MLflow's get/restore see them).

    `related` narrows the joined rows for hot paths (a metric batch needs none of them).
    """
    # run_id is unique: slicing avoids the ORDER BY that first() adds.
    found = list(
        runs_visible(principal, include_deleted=include_deleted).select_related(*related).filter(run_id=run_id)[:1]
    )
    run = found[0] if found else None
    if run is None:
        raise NotFound(f"run '{run_id}' does not exist or is not visible to you")
    if for_write and not _may_write(principal, run):
        raise Forbidden(f"this run token may change only its own run and its descendants, not run '{run_id}'")
    return run


def compute_targets(principal: Principal, workspace: Workspace) -> QuerySet[ComputeTarget]:
    return ComputeTarget.objects.filter(workspace=workspace, workspace__in=workspaces_visible(principal))


def compute_target_get(principal: Principal, workspace: Workspace, name: str) -> ComputeTarget:
    target = compute_targets(principal, workspace).filter(name=name).first()
    if target is None:
        names = ", ".join(compute_targets(principal, workspace).values_list("name", flat=True)) or "none"
        raise NotFound(f"compute target '{name}' does not exist in workspace '{workspace.name}' (registered: {names})")
    return target


def is_member(user, workspace: Workspace) -> bool:
    return user.is_authenticated and workspace.memberships.filter(user=user).exists()


# --- run filters ---------------------------------------------------------------------------


def parse_kv_filter(raw: str | None, what: str) -> str | dict | None:
    """Decode a tags/properties filter sent as JSON.

    A JSON string means "key present" (any value, None included); a JSON object
    means "every pair equal" (null = value is None). Anything else is refused,
    as the v1 SDK refuses a list.
    """
    if raw is None or raw == "":
        return None
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw  # a bare word is a key-presence filter
    except RecursionError:
        raise InvalidInput(f"{what} filter is nested too deeply; use a key or a flat JSON object", field=what) from None
    if isinstance(value, str | dict):
        if isinstance(value, dict) and not all(isinstance(v, str | type(None)) for v in value.values()):
            raise InvalidInput(f"{what} filter values must be strings or null", field=what)
        texts = [value] if isinstance(value, str) else [*value, *(v for v in value.values() if v is not None)]
        # JSON may escape what no stored key or value holds and databases refuse: NUL, lone surrogates.
        if any("\x00" in t or any("\ud800" <= ch <= "\udfff" for ch in t) for t in texts):
            raise InvalidInput(f"{what} filter contains a NUL character or a lone surrogate", field=what)
        return value
    raise InvalidInput(
        f"unknown filter type for run {what}: {type(value).__name__}; use a key (string) or a "
        "JSON object of key → value",
        field=what,
    )


def _kv_filter(model, kv: str | dict) -> Q:
    # "pk IN (SELECT run_id FROM tags WHERE key=… AND value=…)" lets the database start from the
    # (key, value) index and touch only matching runs; an EXISTS per run would probe every run
    # of a 100,000-run experiment on SQLite.
    if isinstance(kv, str):
        return Q(pk__in=model.objects.filter(key=kv).values("run_id"))
    condition = Q()
    for key, value in kv.items():
        pairs = model.objects.filter(key=key)
        pairs = pairs.filter(value__isnull=True) if value is None else pairs.filter(value=value)
        condition &= Q(pk__in=pairs.values("run_id"))
    return condition


def filter_runs(
    runs: QuerySet[Run],
    *,
    tags: str | dict | None = None,
    properties: str | dict | None = None,
    status: str | Iterable[str] | None = None,
    submitted_by: str | None = None,
    compute_target: str | None = None,
    text: str | None = None,
) -> QuerySet[Run]:
    """The run filters shared by the API, the SDK's queries and the studio pages."""
    if tags:
        runs = runs.filter(_kv_filter(RunTag, tags))
    if properties:
        runs = runs.filter(_kv_filter(RunProperty, properties))
    if status:
        statuses = [status] if isinstance(status, str) else list(status)
        unknown = [s for s in statuses if s not in Status.values]
        if unknown:
            raise InvalidInput(f"unknown status {unknown[0]!r}; use one of {', '.join(Status.values)}", field="status")
        runs = runs.filter(status__in=statuses)
    if submitted_by:
        runs = runs.filter(submitted_by__username=submitted_by)
    if compute_target:
        runs = runs.filter(compute_target=compute_target)
    if text:
        runs = runs.filter(text_match(text))
    return runs


def text_match(text: str, *, experiment_name: bool = True) -> Q:
    """Search bar: display name, description, run id, submitter, tags and (unless one experiment's
    page, where every run shares it) the experiment's name.

    Tags match through one IN (subquery) over the tag table rather than a
    subquery per run: 40% less time through 100,000 runs on SQLite and PostgreSQL.
    """
    text = text.strip()
    tags = RunTag.objects.filter(Q(key__icontains=text) | Q(value__icontains=text)).values("run_id")
    condition = (
        Q(display_name__icontains=text)
        | Q(description__icontains=text)
        | Q(run_id__icontains=text)
        | Q(submitted_by__username__icontains=text)
        | Q(pk__in=tags)
    )
    return condition | Q(experiment__name__icontains=text) if experiment_name else condition


def run_children(principal: Principal, parent: Run, *, recursive: bool = False) -> QuerySet[Run]:
    runs = runs_visible(principal)
    if recursive:
        return runs.filter(root_id=parent.tree_root_pk, path__startswith=parent.path).exclude(pk=parent.pk)
    return runs.filter(parent=parent)


def with_labels(runs: QuerySet[Run]) -> QuerySet[Run]:
    """Load what run representations show, in a fixed number of queries."""
    return runs.select_related("experiment__workspace", "submitted_by", "parent").prefetch_related(
        "tag_set", "property_set"
    )
