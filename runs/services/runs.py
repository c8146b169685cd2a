"""Writes to runs: creation, status changes, tags, properties.

Every status change goes through `transition`, a compare-and-swap on the
current status, so a cancel racing a completion ends in one well-defined state.
"""

from __future__ import annotations

import contextlib
import re
import uuid
from collections.abc import Iterable
from datetime import datetime

from django.db import IntegrityError, transaction
from django.db.models import CharField, F, Value
from django.db.models.functions import Cast, Concat
from django.utils import timezone

from runs import limits
from runs.access import Principal
from runs.bulk import insert_rows
from runs.errors import Conflict, Forbidden, InvalidInput
from runs.lifecycle import (
    ACTIVE,
    NOT_YET_DISPATCHED,
    TERMINAL,
    IllegalTransition,
    Status,
    can_transition,
)
from runs.models import Experiment, Run, RunEvent, RunProperty, RunTag

RUN_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-.]{0,254}$")
BATCH_CHILD_TAG = "azureml.batch_child_number"  # the v1 name, so ported queries keep working

_MAX_CAS_ATTEMPTS = 10


# --- creation -----------------------------------------------------------------------------


def _check_run_id(run_id: str | None) -> str:
    if run_id is None:
        return str(uuid.uuid4())
    if not isinstance(run_id, str) or not RUN_ID_RE.fullmatch(run_id):
        raise InvalidInput(
            "run_id must be 1-255 letters, digits, '_', '-' or '.', starting with a letter or digit",
            field="run_id",
        )
    return run_id


def _reserve_numbers(experiment: Experiment, count: int) -> int:
    """Reserve `count` run numbers in the experiment; return the first. Call inside a transaction."""
    Experiment.objects.filter(pk=experiment.pk).update(
        last_run_number=F("last_run_number") + count, last_activity_at=timezone.now()
    )
    last = Experiment.objects.values_list("last_run_number", flat=True).get(pk=experiment.pk)
    return last - count + 1


def _new_runs(
    experiment: Experiment,
    parent: Run | None,
    specs: list[dict],
    *,
    user,
    status: str,
    run_type: str = Run.Type.INTERACTIVE,
    compute_target: str | None = None,
) -> list[Run]:
    """Insert runs in bulk, with numbers, tree links, paths, tags and properties.

    Every spec has the same keys (a run_id, optional labels). Raises Conflict
    when a given run_id is taken; nothing is written then.
    """
    now = timezone.now()
    target = compute_target or (parent.compute_target if parent else "local")
    shared = {
        "experiment_id": experiment.pk,
        "run_type": run_type,
        "status": status,
        "parent_id": parent.pk if parent else None,
        "root_id": parent.tree_root_pk if parent else None,
        "depth": parent.depth + 1 if parent else 0,
        "compute_target": target,
        "submitted_by_id": user.pk if user is not None and user.is_authenticated else None,
        "created_at": now,
        "status_changed_at": now,
        "started_at": now if status == Status.RUNNING else None,
    }
    with transaction.atomic():
        first = _reserve_numbers(experiment, len(specs))
        last = first + len(specs) - 1
        rows = [
            {
                "run_id": spec["run_id"],
                "number": first + i,
                "display_name": spec.get("display_name", ""),
                "description": spec.get("description", ""),
                "run_definition": spec.get("run_definition", {}),
                "heartbeat_timeout_seconds": spec.get("heartbeat_timeout_seconds"),
                "last_heartbeat_at": now if spec.get("heartbeat_timeout_seconds") else None,
            }
            for i, spec in enumerate(specs)
        ]
        try:
            with transaction.atomic():
                insert_rows(Run, shared, rows)
        except IntegrityError:
            taken = Run.objects.filter(run_id__in=[s["run_id"] for s in specs]).values_list("run_id", flat=True)
            raise Conflict(f"run id '{next(iter(taken), '?')}' already exists; choose another or omit it") from None
        new = Run.objects.filter(experiment=experiment, number__range=(first, last))
        pks = dict(new.values_list("number", "pk"))
        prefix = parent.path if parent else "/"
        new.update(
            path=Concat(Value(prefix), Cast("pk", output_field=CharField()), Value("/"), output_field=CharField())
        )
        for model, key in ((RunTag, "tags"), (RunProperty, "properties")):
            pairs = [
                {"run_id": pks[first + i], "key": k, "value": v}
                for i, spec in enumerate(specs)
                for k, v in spec.get(key, {}).items()
            ]
            insert_rows(model, {}, pairs)
    runs = []
    for row, spec in zip(rows, specs, strict=True):
        pk = pks[row["number"]]
        run = Run(pk=pk, path=f"{prefix}{pk}/", **shared, **row)
        run.experiment, run.parent, run.submitted_by = experiment, parent, user if shared["submitted_by_id"] else None
        # What was set at creation, so callers can answer without reading the rows back.
        run.created_tags, run.created_properties = spec.get("tags", {}), spec.get("properties", {})
        runs.append(run)
    return runs


def _clean_spec(data: dict) -> dict:
    spec = {"run_id": _check_run_id(data.get("run_id"))}
    spec["display_name"] = limits.check_text(data.get("display_name"), "display_name", limits.DISPLAY_NAME_MAX)
    spec["description"] = limits.check_text(data.get("description"), "description", limits.DESCRIPTION_MAX)
    spec["tags"] = _clean_pairs(limits.null_as(data.get("tags"), {}), "tag", limits.TAGS_PER_RUN_MAX)
    spec["properties"] = _clean_pairs(
        limits.null_as(data.get("properties"), {}), "property", limits.PROPERTIES_PER_RUN_MAX
    )
    timeout = data.get("heartbeat_timeout_seconds")
    if timeout is not None:
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 5 <= timeout <= 86400:
            raise InvalidInput(
                "heartbeat_timeout_seconds must be a number from 5 to 86400", field="heartbeat_timeout_seconds"
            )
        spec["heartbeat_timeout_seconds"] = float(timeout)
    return spec


def _clean_pairs(data: object, what: str, max_items: int) -> dict[str, str | None]:
    data = limits.check_mapping(data, "properties" if what == "property" else f"{what}s", max_items)
    return {
        limits.check_key(key, f"{what} key"): limits.check_value(value, f"{what} '{str(key)[:40]}'")
        for key, value in data.items()
    }


def run_start_logging(principal: Principal, experiment: Experiment, data: dict) -> Run:
    """Create an interactive run, already Running (Experiment.start_logging).

    Raises InvalidInput for bad fields, Conflict for a run_id already taken.
    """
    if principal.run is not None:
        raise Forbidden("a run token cannot start top-level runs; use child_run() or submit_child()")
    spec = _clean_spec(data)
    return _new_runs(experiment, None, [spec], user=principal.user, status=Status.RUNNING, compute_target="local")[0]


def children_create(principal: Principal, parent: Run, data: dict) -> list[Run]:
    """Create child runs of `parent` in one statement, Running (child_run / create_children).

    `data` holds exactly one of: `count` (each child tagged with its batch number),
    `tag_key` + `tag_values` (one child per value), or `children` (a list of
    specs with optional run_id, display_name, tags). At most 10,000 per request.
    """
    count, tag_key, tag_values, children = (
        data.get("count"),
        data.get("tag_key"),
        data.get("tag_values"),
        data.get("children"),
    )
    given = [
        name for name, value in (("count", count), ("tag_key", tag_key), ("children", children)) if value is not None
    ]
    if len(given) != 1 or (tag_key is not None) != (tag_values is not None):
        raise InvalidInput("give either count, or tag_key with tag_values, or children")
    # A finished parent may still get children: SPEC §1 calls create_children after
    # `with exp.start_logging() as parent_run:` has completed it, as v1 allows.
    if count is not None:
        if not limits.is_int(count) or count < 1:
            raise InvalidInput("count must be a positive integer", field="count")
        _check_batch_size(count)
        specs = [{"run_id": str(uuid.uuid4()), "tags": {BATCH_CHILD_TAG: str(i)}} for i in range(count)]
    elif tag_key is not None:
        key = limits.check_key(tag_key, "tag_key")
        if not isinstance(tag_values, list) or not tag_values:
            raise InvalidInput("tag_values must be a non-empty list", field="tag_values")
        _check_batch_size(len(tag_values))
        specs = [{"run_id": str(uuid.uuid4()), "tags": {key: limits.check_value(v, "tag value")}} for v in tag_values]
    else:
        if not isinstance(children, list) or not children or not all(isinstance(c, dict) for c in children):
            raise InvalidInput("children must be a non-empty list of objects", field="children")
        _check_batch_size(len(children))
        specs = [_clean_spec(child) for child in children]
    return _new_runs(parent.experiment, parent, specs, user=principal.user, status=Status.RUNNING)


def _check_batch_size(n: int) -> None:
    if n > limits.CHILDREN_PER_REQUEST_MAX:
        raise InvalidInput(
            f"{n} children asked for; the limit is {limits.CHILDREN_PER_REQUEST_MAX} per request — split the batch",
            field="count",
        )


# --- status ---------------------------------------------------------------------------------


def transition(
    run: Run,
    to: str,
    *,
    actor=None,
    reason: str = "",
    allowed_from: Iterable[str] | None = None,
    **fields,
) -> bool:
    """Change `run.status` to `to` with a compare-and-swap; return False if it already was `to`.

    Re-reads and re-decides when another writer got there first. Raises
    IllegalTransition when the lifecycle (or `allowed_from`) forbids the change.
    `fields` are saved in the same UPDATE. The instance is updated in place.
    """
    allowed = frozenset(allowed_from) if allowed_from is not None else None
    for _ in range(_MAX_CAS_ATTEMPTS):
        current = run.status
        if current == to:
            return False
        if (
            not can_transition(current, to)
            or (allowed is not None and current not in allowed)
            # A finished run changes only when the caller names its status (fail() names Completed):
            # a writer that decided on an older read must not overwrite it (the poller failing a
            # run that has just completed, a stale fail() skipping the record of who failed it).
            or (current in TERMINAL and (allowed is None or current not in allowed))
        ):
            raise IllegalTransition(run.run_id, current, to)
        now = timezone.now()
        updates = {"status": to, "status_changed_at": now, **fields}
        if to == Status.RUNNING and run.started_at is None:
            updates["started_at"] = now
        if to in TERMINAL and run.ended_at is None:
            updates["ended_at"] = now
        # The change and its event commit together: no change without its event if the process dies
        # between them, and the row lock the UPDATE takes orders racing changes' events as they happened.
        with transaction.atomic():
            changed = Run.objects.filter(pk=run.pk, status=current).update(**updates) == 1
            if changed:
                RunEvent.objects.create(
                    run_id=run.pk, at=now, from_status=current, to_status=to, actor=actor, reason=reason
                )
        if changed:
            for name, value in updates.items():
                setattr(run, name, value)
            if to in TERMINAL and run.is_managed:
                _after_slot_freed(run)
            return True
        run.refresh_from_db()
    raise Conflict(f"run {run.run_id} is changing too fast to update; retry")


def _after_slot_freed(run: Run) -> None:
    from runs.services import execution  # execution imports this module

    execution.dispatch_queued_on_commit(run.experiment.workspace_id, run.compute_target)


def _actor(principal: Principal):
    return principal.user if principal.user.is_authenticated else None


def run_start(principal: Principal, run: Run) -> Run:
    """NotStarted → Running for runs the client drives. Raises IllegalTransition."""
    _refuse_client_status(principal, run, "start")
    transition(run, Status.RUNNING, actor=_actor(principal), reason="started by the client")
    return run


def run_complete(principal: Principal, run: Run) -> Run:
    """Mark an interactive run Completed. Submitted runs complete when their process exits."""
    _refuse_client_status(principal, run, "complete")
    transition(run, Status.COMPLETED, actor=_actor(principal), reason="completed by the client")
    return run


def _refuse_client_status(principal: Principal, run: Run, action: str) -> None:
    if run.is_managed:
        raise Conflict(
            f"run {run.run_id} is a submitted run; its status follows its process and cannot be "
            f"set with {action}(): use cancel() or fail() to stop it",
            code="system_managed",
        )


def build_error(message: str, code: str = "UserError", **extra) -> dict:
    error = {"code": code or "UserError", "message": message}
    error.update({k: v for k, v in extra.items() if v is not None})
    return {"error": error, "time": timezone.now().isoformat()}


def run_fail(principal: Principal, run: Run, *, error_details=None, error_code: str | None = None) -> Run:
    """Mark a run Failed with an error (Run.fail).

    Interactive runs fail at once. A submitted run that is executing is stopped
    like a cancel (SIGTERM, grace, SIGKILL) and ends Failed. A Completed run may
    still be failed ("it finished, but with the wrong script"); who and when are
    recorded. Raises IllegalTransition for Failed or Canceled runs.
    """
    error = _error_from_details(error_details, error_code)
    actor = _actor(principal)
    who = actor.username if actor else "a run token"
    if run.status != Status.COMPLETED:
        if run.is_managed and run.status in ACTIVE and run.status not in NOT_YET_DISPATCHED:
            _request_stop(run, Run.StopRequest.FAIL, actor=actor, reason=f"fail requested by {who}", error=error)
            return run
        try:
            transition(run, Status.FAILED, actor=actor, reason=f"failed by {who}", error=error, allowed_from=ACTIVE)
            return run
        except IllegalTransition:
            if run.status != Status.COMPLETED:
                raise
            # It completed while we decided: failing it now is failing a Completed run, recorded below.
    error["error"]["markedFailedAfterCompletion"] = {"by": who, "at": timezone.now().isoformat()}
    transition(
        run,
        Status.FAILED,
        actor=actor,
        reason=f"marked Failed after completion by {who}",
        error=error,
        allowed_from={Status.COMPLETED},
    )
    return run


def _error_from_details(error_details, error_code: str | None) -> dict:
    # The code is what clients match on (error.code == "UserError"): it must stay a short string.
    if error_code is not None:
        error_code = limits.check_text(error_code, "error_code", limits.KEY_MAX) or None
    if error_details is None:
        return build_error("the run was marked as failed", error_code or "UserError")
    if isinstance(error_details, str):
        return build_error(limits.check_text(error_details, "error_details", 100_000), error_code or "UserError")
    if isinstance(error_details, dict):
        message = error_details.get("message") or "the run was marked as failed"
        extra = {k: v for k, v in error_details.items() if k not in ("message", "code")}
        limits.check_no_nul(error_details, "error_details")
        code = error_code or limits.check_text(error_details.get("code"), "error_details.code", limits.KEY_MAX)
        return build_error(str(message)[:100_000], code or "UserError", **extra)
    raise InvalidInput("error_details must be a string or an object with a message", field="error_details")


def run_cancel(principal: Principal, run: Run) -> Run:
    """Cancel a run (Run.cancel).

    Not yet dispatched → Canceled at once; it never starts. Executing submitted
    run → CancelRequested; its runner stops the process group and reports
    Canceled. Interactive run → Canceled. Cancelling twice is harmless.
    Raises IllegalTransition for a finished run.
    """
    actor = _actor(principal)
    who = actor.username if actor else "a run token"
    if run.status == Status.CANCEL_REQUESTED or (run.status == Status.CANCELED):
        return run
    if run.is_managed and run.status in ACTIVE and run.status not in NOT_YET_DISPATCHED:
        _request_stop(run, Run.StopRequest.CANCEL, actor=actor, reason=f"cancel requested by {who}")
        return run
    transition(run, Status.CANCELED, actor=actor, reason=f"canceled by {who}")
    return run


def _request_stop(run: Run, kind: str, *, actor, reason: str, error: dict | None = None) -> None:
    fields = {"stop_request": kind}
    if error is not None:
        fields["error"] = error
    try:
        transition(run, Status.CANCEL_REQUESTED, actor=actor, reason=reason, **fields)
    except IllegalTransition:
        if run.status != Status.FINALIZING:
            raise
        # Finalizing: the process has already exited; the runner reads the stop
        # request when it reports the exit.
        Run.objects.filter(pk=run.pk).update(**fields)
        for name, value in fields.items():
            setattr(run, name, value)


# --- labels and details ----------------------------------------------------------------------


def run_update(principal: Principal, run: Run, data: dict) -> Run:
    """Set display_name and/or description. Raises InvalidInput."""
    fields = {}
    if "display_name" in data:
        fields["display_name"] = limits.check_text(data["display_name"], "display_name", limits.DISPLAY_NAME_MAX)
    if "description" in data:
        fields["description"] = limits.check_text(data["description"], "description", limits.DESCRIPTION_MAX)
    if not fields:
        raise InvalidInput("nothing to update: give display_name and/or description")
    Run.objects.filter(pk=run.pk).update(**fields)
    for name, value in fields.items():
        setattr(run, name, value)
    return run


def tags_set(principal: Principal, run: Run, tags: object) -> dict[str, str | None]:
    """Merge tags into the run (tags are mutable). Returns all tags. Raises InvalidInput."""
    clean = _clean_pairs(tags, "tag", limits.TAGS_PER_RUN_MAX)
    if clean:
        with transaction.atomic():
            RunTag.objects.bulk_create(
                [RunTag(run=run, key=k, value=v) for k, v in clean.items()],
                update_conflicts=True,
                unique_fields=["run", "key"],
                update_fields=["value"],
            )
            if RunTag.objects.filter(run=run).count() > limits.TAGS_PER_RUN_MAX:
                transaction.set_rollback(True)
                raise InvalidInput(f"a run may have at most {limits.TAGS_PER_RUN_MAX} tags")
    return tags_of(run)


def tags_remove(principal: Principal, run: Run, keys: object) -> dict[str, str | None]:
    """Remove the given tag keys (absent keys are ignored). Returns the remaining tags."""
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise InvalidInput("keys must be a list of tag keys", field="keys")
    # A key no tag could hold is refused, not looked up (PostgreSQL refuses a NUL even in a
    # lookup); an empty key stays a no-op, as removing any absent key is.
    for key in keys:
        if key:
            limits.check_key(key, "tag key")
    RunTag.objects.filter(run=run, key__in=keys).delete()
    return tags_of(run)


def tags_of(run: Run) -> dict[str, str | None]:
    return dict(RunTag.objects.filter(run=run).order_by("pk").values_list("key", "value"))


def properties_of(run: Run) -> dict[str, str | None]:
    return dict(RunProperty.objects.filter(run=run).order_by("pk").values_list("key", "value"))


def properties_add(principal: Principal, run: Run, properties: object) -> dict[str, str | None]:
    """Add properties; they are immutable once set.

    Re-adding a key with the same value is a no-op. A different value raises
    Conflict naming the key and the stored value, and nothing is written.
    """
    clean = _clean_pairs(properties, "property", limits.PROPERTIES_PER_RUN_MAX)
    if not clean:
        return properties_of(run)
    with transaction.atomic():
        stored = dict(RunProperty.objects.filter(run=run, key__in=list(clean)).values_list("key", "value"))
        _refuse_changes(stored, clean)
        new = [RunProperty(run=run, key=k, value=v) for k, v in clean.items() if k not in stored]
        try:
            with transaction.atomic():
                RunProperty.objects.bulk_create(new)
        except IntegrityError:
            # Another writer added one of these keys between our read and insert.
            stored = dict(RunProperty.objects.filter(run=run, key__in=list(clean)).values_list("key", "value"))
            _refuse_changes(stored, clean)
            RunProperty.objects.bulk_create(
                [RunProperty(run=run, key=k, value=v) for k, v in clean.items() if k not in stored]
            )
        if RunProperty.objects.filter(run=run).count() > limits.PROPERTIES_PER_RUN_MAX:
            transaction.set_rollback(True)
            raise InvalidInput(f"a run may have at most {limits.PROPERTIES_PER_RUN_MAX} properties")
    return properties_of(run)


def _refuse_changes(stored: dict, wanted: dict) -> None:
    for key, value in wanted.items():
        if key in stored and stored[key] != value:
            raise Conflict(
                f"property '{key}' is already set to {stored[key]!r}; properties are immutable, "
                f"so it cannot become {value!r} (use a tag for values that change)",
                code="property_immutable",
            )


def heartbeat(principal: Principal, run: Run, now: datetime | None = None) -> Run:
    """Record that the process behind an active run is alive.

    A NotResponding run that heartbeats again is Running again.
    """
    now = now or timezone.now()
    Run.objects.filter(pk=run.pk).update(last_heartbeat_at=now)
    run.last_heartbeat_at = now
    if run.status == Status.NOT_RESPONDING:
        with contextlib.suppress(IllegalTransition):
            transition(run, Status.RUNNING, reason="heartbeats resumed")
    return run
