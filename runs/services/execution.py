"""Submitted runs: snapshots, submission, dispatch claims, runner reports, polling.

Dispatch and poll: `run_submit` queues a run and asks Celery (after commit) to
dispatch it on its target's queue; the worker claims it with a compare-and-swap
(Queued → Preparing, only while the target has a free slot), launches a
detached runner, and the runner reports over the API with the run's own
token. `poll_runs` and the workers' host monitors reconcile what went silent.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import tempfile
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Count, Q
from django.utils import timezone

from runs import limits, snapshots
from runs.access import Principal
from runs.errors import Conflict, Forbidden, InvalidInput, PayloadTooLarge
from runs.lifecycle import OCCUPYING, TERMINAL, IllegalTransition, Status
from runs.models import ComputeTarget, Experiment, Run, Snapshot, WorkerHost, Workspace
from runs.paths import clean_relative_path
from runs.selectors import compute_target_get, run_get
from runs.services.runs import _clean_pairs, _new_runs, build_error, transition
from runs.tokens import hash_key, new_run_key

log = logging.getLogger(__name__)

# --- snapshots --------------------------------------------------------------------------------


def snapshot_path(sha256: str) -> Path:
    return Path(settings.SNAPSHOT_DIR) / f"{sha256}.zip"


def snapshot_store(principal: Principal, workspace: Workspace, stream) -> Snapshot:
    """Store an uploaded snapshot zip once per content hash. Raises InvalidInput/PayloadTooLarge."""
    Path(settings.SNAPSHOT_DIR).mkdir(parents=True, exist_ok=True)
    digest, size = hashlib.sha256(), 0
    fd, tmp_name = tempfile.mkstemp(dir=settings.SNAPSHOT_DIR, prefix=".upload-")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            while block := stream.read(1024 * 1024):
                size += len(block)
                if size > settings.STUDIO_SNAPSHOT_MAX_BYTES:
                    raise PayloadTooLarge(
                        f"the snapshot is larger than {settings.STUDIO_SNAPSHOT_MAX_BYTES} bytes, the limit "
                        "(STUDIO_SNAPSHOT_MAX_BYTES); add large data to .amlignore"
                    )
                digest.update(block)
                out.write(block)
        names, _ = snapshots.inspect(
            tmp, max_bytes=settings.STUDIO_SNAPSHOT_MAX_BYTES, max_files=settings.STUDIO_SNAPSHOT_MAX_FILES
        )
        sha = digest.hexdigest()
        final = snapshot_path(sha)
        if not final.exists():
            os.replace(tmp, final)
        try:
            with transaction.atomic():
                snap, _ = Snapshot.objects.get_or_create(
                    workspace=workspace, sha256=sha, defaults={"size": size, "file_count": len(names)}
                )
        except IntegrityError:
            snap = Snapshot.objects.get(workspace=workspace, sha256=sha)
        return snap
    finally:
        tmp.unlink(missing_ok=True)


def snapshot_names(snapshot: Snapshot) -> list[str]:
    names, _ = snapshots.inspect(
        snapshot_path(snapshot.sha256),
        max_bytes=settings.STUDIO_SNAPSHOT_MAX_BYTES,
        max_files=settings.STUDIO_SNAPSHOT_MAX_FILES,
    )
    return names


# --- submission -------------------------------------------------------------------------------


def run_submit(principal: Principal, experiment: Experiment, data: dict) -> Run:
    """Queue a script run (Experiment.submit / Run.submit_child).

    `data`: snapshot (sha256), script or command, arguments, compute_target,
    environment_variables, max_run_duration_seconds, cancel_grace_seconds,
    display_name, description, tags, parent_run_id. The script must be in the
    snapshot. Raises InvalidInput, NotFound (target, snapshot, parent), Forbidden.
    """
    workspace = experiment.workspace
    target = compute_target_get(
        principal, workspace, limits.null_as(data.get("compute_target"), workspace.default_compute_target)
    )
    snapshot = _snapshot_for(workspace, data.get("snapshot"))
    script, command = data.get("script"), data.get("command")
    if bool(script) == bool(command):
        raise InvalidInput("give either script or command")
    if script:
        script = clean_relative_path(script, "script")
        if script not in snapshot_names(snapshot):
            raise InvalidInput(
                f"script '{script}' is not in the snapshot; the script must be inside source_directory", field="script"
            )
    arguments = limits.null_as(data.get("arguments"), [])
    if not isinstance(arguments, list) or not all(isinstance(a, str | int | float) for a in arguments):
        raise InvalidInput("arguments must be a list of strings or numbers", field="arguments")
    arguments = [str(a) for a in arguments]
    if command is not None and not (
        isinstance(command, str) or (isinstance(command, list) and all(isinstance(c, str) for c in command))
    ):
        raise InvalidInput("command must be a string or a list of strings", field="command")
    limits.check_no_nul([arguments, command], "arguments and command")
    env = limits.null_as(data.get("environment_variables"), {})
    if not isinstance(env, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in env.items()):
        raise InvalidInput("environment_variables must be an object of string → string", field="environment_variables")
    limits.check_no_nul(env, "environment_variables")  # no process environment can hold one either
    reserved = [k for k in env if k.startswith(("STUDIO_", "AZUREML_"))]
    if reserved:
        raise InvalidInput(
            f"environment variable '{reserved[0]}' is reserved for the runner", field="environment_variables"
        )
    max_duration = _positive_number(
        data.get("max_run_duration_seconds"), "max_run_duration_seconds", 2592000, integer=True
    )
    grace = _positive_number(
        data.get("cancel_grace_seconds"), "cancel_grace_seconds", settings.STUDIO_CANCEL_GRACE_SECONDS, upper=3600
    )
    parent = None
    if data.get("parent_run_id"):
        parent = run_get(principal, data["parent_run_id"], for_write=True)
        if parent.experiment_id != experiment.pk:
            raise InvalidInput("a child run must be in its parent's experiment", field="parent_run_id")
        if parent.status in TERMINAL:
            raise Conflict(f"run {parent.run_id} is {parent.status}; a finished run cannot get new children")
    elif principal.run is not None:
        raise Forbidden("a run token can only submit children of its own run (submit_child)")
    definition = {
        "script": script,
        "command": command,
        "arguments": arguments,
        "target": target.name,
        "environmentVariables": env,
        "maxRunDurationSeconds": max_duration,
        "cancelGraceSeconds": grace,
        "snapshotId": snapshot.sha256,
        "framework": "Python",
    }
    spec = {
        "run_id": _submitted_run_id(experiment.name),
        "display_name": limits.check_text(data.get("display_name"), "display_name", limits.DISPLAY_NAME_MAX),
        "description": limits.check_text(data.get("description"), "description", limits.DESCRIPTION_MAX),
        "tags": _clean_pairs(limits.null_as(data.get("tags"), {}), "tag", limits.TAGS_PER_RUN_MAX),
        "run_definition": definition,
    }
    with transaction.atomic():
        run = _new_runs(
            experiment,
            parent,
            [spec],
            user=principal.user,
            status=Status.QUEUED,
            run_type=Run.Type.SUBMITTED,
            compute_target=target.name,
        )[0]
        Run.objects.filter(pk=run.pk).update(
            snapshot=snapshot, max_run_duration_seconds=max_duration, cancel_grace_seconds=grace
        )
        run.snapshot, run.max_run_duration_seconds, run.cancel_grace_seconds = snapshot, max_duration, grace
        _enqueue_dispatch_on_commit(run.pk, target.queue)
    return run


def _positive_number(value, what: str, default, *, integer: bool = False, upper: float = 2592000):
    if value is None:
        return default
    ok_type = isinstance(value, int) if integer else isinstance(value, int | float)
    if isinstance(value, bool) or not ok_type or not 0 <= value <= upper:
        kind = "an integer" if integer else "a number"
        raise InvalidInput(f"{what} must be {kind} from 0 to {upper}", field=what)
    return value


def _snapshot_for(workspace: Workspace, sha: object) -> Snapshot:
    if not isinstance(sha, str):
        raise InvalidInput("snapshot (the sha256 of an uploaded snapshot) is required", field="snapshot")
    snapshot = Snapshot.objects.filter(workspace=workspace, sha256=sha).first()
    if snapshot is None or not snapshot_path(sha).exists():
        raise InvalidInput(f"snapshot {sha[:16]} was not uploaded to this workspace; upload it first", field="snapshot")
    return snapshot


def _submitted_run_id(experiment_name: str) -> str:
    import time
    import uuid

    return f"{experiment_name[:200]}_{int(time.time())}_{uuid.uuid4().hex[:8]}"


def _enqueue_dispatch_on_commit(run_pk: int, queue: str) -> None:
    from runs.tasks import dispatch_run

    transaction.on_commit(_unless_broker_down(lambda: dispatch_run.apply_async(args=[run_pk], queue=queue)))


def dispatch_queued_on_commit(workspace_id: int, target_name: str) -> None:
    """A slot on a target freed up: dispatch the oldest queued runs that now fit."""
    transaction.on_commit(_unless_broker_down(lambda: dispatch_queued(workspace_id, target_name)))


def _unless_broker_down(send):
    """The change is committed: a broker that cannot take the message must not fail the request
    (a submit answered 500 whose run exists invites a second submit). The run waits Queued, and
    poll_runs dispatches queued runs that fit once the broker is back."""

    def call() -> None:
        try:
            send()
        except Exception as exc:
            log.warning("could not queue a dispatch (%r); the poller dispatches it once the broker is back", exc)

    return call


def dispatch_queued(workspace_id: int, target_name: str) -> int:
    target = ComputeTarget.objects.filter(workspace_id=workspace_id, name=target_name).first()
    if target is None:
        return 0
    runs = Run.objects.filter(experiment__workspace_id=workspace_id, compute_target=target_name)
    free = target.max_concurrent_runs - runs.filter(status__in=OCCUPYING).count()
    if free <= 0:
        return 0
    queued = list(runs.filter(status=Status.QUEUED).order_by("pk").values_list("pk", flat=True)[:free])
    from runs.tasks import dispatch_run

    for pk in queued:
        dispatch_run.apply_async(args=[pk], queue=target.queue)
    return len(queued)


# --- dispatch (on the worker) ----------------------------------------------------------------------


def run_claim(run_pk: int, hostname: str) -> tuple[Run, str] | None:
    """Claim a queued run for this host if its target has a free slot.

    Returns (run, run token key), or None when the run is no longer Queued
    (canceled, or claimed by a redelivered dispatch) or the target is full;
    a full target's runs are dispatched when a slot frees. The compute
    target's row lock makes concurrent claims on PostgreSQL take turns;
    SQLite serialises writers anyway.
    """
    run = Run.objects.select_related("experiment__workspace").filter(pk=run_pk).first()
    if run is None or run.status != Status.QUEUED:
        return None
    with transaction.atomic():
        target = (
            ComputeTarget.objects.select_for_update()
            .filter(workspace=run.experiment.workspace, name=run.compute_target)
            .first()
        )
        # Re-read under the target's lock: a concurrent claim may have won meanwhile.
        run.refresh_from_db()
        if run.status != Status.QUEUED:
            return None
        if target is None:
            transition(
                run,
                Status.FAILED,
                reason="compute target was deleted",
                error=build_error(f"compute target '{run.compute_target}' no longer exists", "ComputeTargetNotFound"),
            )
            return None
        busy = Run.objects.filter(
            experiment__workspace=run.experiment.workspace, compute_target=target.name, status__in=OCCUPYING
        ).count()
        if busy >= target.max_concurrent_runs:
            return None
        key = new_run_key()
        try:
            claimed = transition(
                run,
                Status.PREPARING,
                reason=f"dispatched to host {hostname}",
                allowed_from={Status.QUEUED},
                host=hostname,
                token_hash=hash_key(key),
                dispatched_at=timezone.now(),
            )
        except IllegalTransition:
            return None
        if not claimed:  # it was already Preparing: another dispatch of the same run won
            return None
    return run, key


def runner_launched(run: Run, pid: int) -> None:
    """The worker started the runner process: Preparing → Starting."""
    Run.objects.filter(pk=run.pk).update(runner_pid=pid, last_heartbeat_at=timezone.now())
    run.runner_pid = pid
    try:
        transition(run, Status.STARTING, reason=f"runner started (pid {pid})", allowed_from={Status.PREPARING})
    except IllegalTransition:
        pass  # a cancel arrived meanwhile; the runner learns it from its first heartbeat


def dispatch_failed(run: Run, exc: BaseException) -> None:
    run.refresh_from_db()
    if run.status in TERMINAL:
        return
    transition(
        run,
        Status.FAILED,
        reason=f"dispatch failed: {exc}",
        error=build_error(f"the run could not be started on host {run.host}: {exc}", "DispatchFailed"),
    )


# --- runner reports (with the run token) -------------------------------------------------------


def _runner_only(principal: Principal, run: Run) -> None:
    if principal.run is None or principal.run.pk != run.pk:
        raise Forbidden("only this run's runner (with its run token) may report on it")


def runner_heartbeat(principal: Principal, run: Run) -> dict:
    """Record liveness; tell the runner whether to stop. Throttles its writes to one per 2 s."""
    _runner_only(principal, run)
    now = timezone.now()
    if run.last_heartbeat_at is None or now - run.last_heartbeat_at > timedelta(seconds=2):
        Run.objects.filter(pk=run.pk).update(last_heartbeat_at=now)
        run.last_heartbeat_at = now
    if run.status == Status.NOT_RESPONDING:
        resume = Status.CANCEL_REQUESTED if run.stop_request else Status.RUNNING
        with contextlib.suppress(IllegalTransition):
            transition(run, resume, reason="the runner is heard from again")
    return runner_instructions(run)


def runner_instructions(run: Run) -> dict:
    return {
        "status": run.status,
        "stop": run.stop_request,
        "grace_seconds": run.cancel_grace_seconds,
        "heartbeat_seconds": heartbeat_interval(),
    }


def heartbeat_interval() -> float:
    """How often a runner should heartbeat: four beats per STUDIO_HEARTBEAT_TIMEOUT, at most one
    every 5 s. Cancels reach a runner through its host's monitor (SIGUSR1) at once; the heartbeat
    is for liveness, and one a second per run was a third of a busy studio's requests."""
    return max(0.5, min(5.0, settings.STUDIO_HEARTBEAT_TIMEOUT / 4))


def runner_started(principal: Principal, run: Run, data: dict) -> dict:
    """The user's script process started: → Running.

    `runner_pid` is recorded if the worker that launched the runner could not (it died, or the
    database was away, right after the launch): the host monitor watches the runner by it.
    """
    _runner_only(principal, run)
    pid = data.get("pid")
    if pid is not None and (not limits.is_int(pid) or pid < 1):
        raise InvalidInput("pid must be the script's process id, a positive integer", field="pid")
    runner_pid = data.get("runner_pid")
    if runner_pid is not None and (not limits.is_int(runner_pid) or runner_pid < 1):
        raise InvalidInput("runner_pid must be the runner's process id, a positive integer", field="runner_pid")
    if run.runner_pid is None and runner_pid is not None:
        Run.objects.filter(pk=run.pk, runner_pid__isnull=True).update(runner_pid=runner_pid)
        run.runner_pid = runner_pid
    try:
        transition(
            run,
            Status.RUNNING,
            reason=f"script started (pid {pid})",
            allowed_from={Status.PREPARING, Status.STARTING, Status.NOT_RESPONDING},
        )
    except IllegalTransition:
        if run.status not in (Status.CANCEL_REQUESTED, Status.RUNNING):
            raise
    return runner_instructions(run)


def runner_finalizing(principal: Principal, run: Run) -> dict:
    """The script exited; the runner uploads outputs and logs: → Finalizing (unless stopping)."""
    _runner_only(principal, run)
    if run.status not in (Status.CANCEL_REQUESTED, Status.FINALIZING):
        transition(run, Status.FINALIZING, reason="script exited; uploading outputs")
    return runner_instructions(run)


def runner_exit(principal: Principal, run: Run, data: dict) -> dict:
    """The runner's last word: the exit code decides the final status.

    A stop request wins (cancel → Canceled, fail → Failed with the given
    error); exceeding max_run_duration_seconds → Failed; exit code 0 →
    Completed; anything else → Failed with the exit code and the log's tail.
    """
    _runner_only(principal, run)
    if "exit_code" not in data:
        # A report without it would end the run Failed with "no exit code" for a client bug.
        raise InvalidInput("exit_code is required: the script's exit code, or null if unknown", field="exit_code")
    exit_code = data.get("exit_code")
    if exit_code is not None and not limits.is_int(exit_code):
        raise InvalidInput("exit_code must be an integer or null", field="exit_code")
    for name in ("reason", "log_tail"):
        if data.get(name) is not None and not isinstance(data[name], str):
            raise InvalidInput(f"{name} must be a string or null", field=name)
    if data.get("timed_out") is not None and not isinstance(data["timed_out"], bool):
        raise InvalidInput("timed_out must be true or false", field="timed_out")  # "no" would read as true
    # A script's last output may hold NUL bytes, which PostgreSQL's JSON (the run's error) cannot store.
    reason = str(data.get("reason") or "")[:2000].replace("\x00", "\ufffd")
    tail = str(data.get("log_tail") or "")[-8000:].replace("\x00", "\ufffd")
    fields = {"exit_code": exit_code}
    if run.stop_request == Run.StopRequest.CANCEL:
        transition(run, Status.CANCELED, reason=f"stopped on request; {reason or f'exit code {exit_code}'}", **fields)
    elif run.stop_request == Run.StopRequest.FAIL:
        transition(run, Status.FAILED, reason=f"stopped by fail(); {reason or f'exit code {exit_code}'}", **fields)
    elif data.get("timed_out"):
        fields["error"] = build_error(
            f"the run exceeded max_run_duration_seconds={run.max_run_duration_seconds} and was stopped",
            "MaxRunDurationExceeded",
            logTail=tail or None,
        )
        transition(run, Status.FAILED, reason="max_run_duration_seconds exceeded", **fields)
    elif exit_code == 0:
        transition(run, Status.COMPLETED, reason="script exited with code 0", **fields)
    else:
        described = f"exit code {exit_code}" if exit_code is not None else "no exit code"
        if reason:
            described = f"{described} ({reason})"
        fields["error"] = build_error(
            f"the script failed with {described}" + (f"\n\n{tail}" if tail else ""),
            "ScriptExecution.ExitCode",
            exitCode=exit_code,
            logTail=tail or None,
        )
        transition(run, Status.FAILED, reason=f"script exited with {described}", **fields)
    return runner_instructions(run)


# --- polling -------------------------------------------------------------------------------------


def _fail_lost(run: Run, reason: str) -> None:
    try:
        if run.stop_request == Run.StopRequest.CANCEL:
            transition(run, Status.CANCELED, reason=f"{reason}; it had been asked to cancel")
        elif run.stop_request == Run.StopRequest.FAIL:
            transition(run, Status.FAILED, reason=reason)
        else:
            transition(run, Status.FAILED, reason=reason, error=build_error(reason, "RunLost"))
    except IllegalTransition:
        if run.status not in TERMINAL:
            raise
        # It ended on its own (its exit report arrived) after the poller read it: that end stands.


def mark_lost(run: Run, reason: str) -> None:
    """A run's process is gone without a report: NotResponding first, Failed if it still is."""
    try:
        if run.status == Status.NOT_RESPONDING:
            _fail_lost(run, reason)
        else:
            transition(run, Status.NOT_RESPONDING, reason=reason)
    except (IllegalTransition, Conflict):
        pass  # it ended on its own meanwhile


def poll_runs(now=None) -> dict:
    """Reconcile runs whose process went silent, and dispatch queued runs that fit.

    A submitted run is lost when its heartbeat is older than the timeout and no
    worker monitor on its host is alive (a live monitor watches the runner
    process itself and would say if it died). An interactive run that promised
    heartbeats is lost when they stop. Lost: NotResponding, then after the same
    time again Failed (Canceled if a cancel was pending), with the reason.
    """
    now = now or timezone.now()
    timeout = timedelta(seconds=settings.STUDIO_HEARTBEAT_TIMEOUT)
    live_hosts = set(WorkerHost.objects.filter(last_seen_at__gte=now - timeout).values_list("hostname", "queue"))
    changed = 0
    watched = (
        Run.objects.filter(status__in=OCCUPYING | {Status.RUNNING})
        .filter(Q(run_type=Run.Type.SUBMITTED) | Q(heartbeat_timeout_seconds__isnull=False))
        .select_related("experiment__workspace")
    )
    unreachable_after = timedelta(seconds=settings.STUDIO_UNREACHABLE_AFTER)
    for run in watched.iterator():
        if run.is_managed:
            last = run.last_heartbeat_at or run.dispatched_at or run.status_changed_at
            if (run.host, run.compute_target) in live_hosts:
                # Its host watches the runner process, so the run is not lost; but if the
                # studio has not heard from it for long, say so (recoverable, never final).
                if run.status != Status.NOT_RESPONDING and now - last >= unreachable_after:
                    mark_lost(
                        run,
                        f"the runner (pid {run.runner_pid}) is alive on host {run.host} but has not "
                        f"reached the studio for {int((now - last).total_seconds())} s; check "
                        "STUDIO_URL on that host and the network between them",
                    )
                    changed += 1
                continue
            limit = timeout
        else:
            last = run.last_heartbeat_at or run.status_changed_at
            limit = timedelta(seconds=run.heartbeat_timeout_seconds)
        silent = now - last
        if run.status == Status.NOT_RESPONDING:
            if now - run.status_changed_at >= limit:
                _fail_lost(run, f"no sign of life for {int(silent.total_seconds())} s" + _where(run))
                changed += 1
        elif silent >= limit:
            mark_lost(run, f"no heartbeat for {int(silent.total_seconds())} s" + _where(run))
            changed += 1
    dispatched = 0
    pending = (
        Run.objects.filter(status=Status.QUEUED)
        .values("experiment__workspace_id", "compute_target")
        .annotate(n=Count("pk"))
    )
    for row in pending:
        dispatched += dispatch_queued(row["experiment__workspace_id"], row["compute_target"])
    return {"changed": changed, "dispatched": dispatched}


def _where(run: Run) -> str:
    if run.is_managed and run.host:
        return f"; the runner (pid {run.runner_pid}) on host {run.host} and its worker are unreachable"
    if run.is_managed:
        return "; no worker picked it up"
    return "; the process that logged it has stopped"


def host_report(hostname: str, queues: list[str], pid: int, alive) -> dict:
    """A worker's host monitor: record it is alive, and check its runners' processes.

    `alive(run)` tells whether the run's runner process still exists on this
    host (found by its command line if its pid was never recorded). Runs whose
    runner vanished become NotResponding, then Failed; runs claimed here whose
    runner never started (the worker died mid-dispatch) fail with that reason,
    and their partial working copies are removed.
    Returns the runs that should be told to stop.
    """
    now = timezone.now()
    for queue in queues:
        WorkerHost.objects.update_or_create(hostname=hostname, queue=queue, pid=pid, defaults={"last_seen_at": now})
    WorkerHost.objects.filter(last_seen_at__lt=now - timedelta(days=1)).delete()
    stop = []
    mine = Run.objects.filter(host=hostname, compute_target__in=queues, status__in=OCCUPYING)
    for run in mine:
        if run.runner_pid is None:
            # No runner recorded: the dispatch died before starting one, unless one runs that its
            # worker could not record (`alive` then finds it by its command line).
            timeout = timedelta(seconds=settings.STUDIO_HEARTBEAT_TIMEOUT)
            if run.dispatched_at and now - run.dispatched_at > timeout and not alive(run):
                _fail_lost(run, f"the dispatch on host {hostname} was interrupted before the runner started")
                # Its half-unpacked working copy is on this host and nothing else will remove it.
                cleanup_workdir(run.run_id)
            continue
        if not alive(run):
            mark_lost(run, f"the runner (pid {run.runner_pid}) on host {hostname} exited without reporting")
            continue
        if run.stop_request:
            stop.append(run)
    return {"stop": stop}


def cleanup_workdir(run_id: str) -> None:
    path = Path(settings.WORK_DIR) / run_id
    shutil.rmtree(path, ignore_errors=True)
