"""The run lifecycle under random sequences of actions from every kind of caller (Hypothesis).

A state machine drives interactive and submitted runs with what the studio's
callers do: the user (start, complete, fail, cancel, heartbeat), the run's own
token (the same, and the runner's reports: started, heartbeat, finalizing,
exit), the worker (claim, launch) and the poller (lost runs), sometimes through
a stale copy of the run, as a request that read the row before another one
changed it would. After every step, for every run:

- its status is one of the lifecycle's, reached only by allowed transitions;
- every change of status has exactly one RunEvent, chained from the status it
  was created with to the status it has now;
- a terminal status stays terminal, except Completed → Failed by fail(), which
  records who and when;
- its run token authenticates while it is active and is refused once it ended.

A second test races real threads on one run (PostgreSQL when DATABASE_URL is
set, SQLite otherwise): one well-defined final state, one chain of events.
"""

from __future__ import annotations

import io
import os
import threading

import pytest
from django.db import connection
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    rule,
    run_state_machine_as_test,
)
from rest_framework.exceptions import AuthenticationFailed

from runs.access import Principal
from runs.auth import authenticate_key
from runs.errors import Conflict, Forbidden
from runs.lifecycle import TERMINAL, IllegalTransition, Status, can_transition
from runs.models import ComputeTarget, Run, RunEvent
from runs.services import execution
from runs.services import runs as run_services
from tests import test_views_support as support

EXAMPLES = int(os.environ.get("STUDIO_LIFECYCLE_EXAMPLES", "15"))

# What a caller may be told instead of a change: the lifecycle forbids it, the run is
# system-managed, or only the runner may report.
REFUSALS = (IllegalTransition, Conflict, Forbidden)


class Lifecycle(RuleBasedStateMachine):
    world: dict = {}  # set by the test: user, experiment, snapshot sha

    runs = Bundle("runs")
    # Submitted runs a worker claimed: they have a run token, and a runner reports on them.
    claimed = Bundle("claimed")

    @initialize()
    def setup(self):
        self.user = self.world["user"]
        self.keys: dict[int, str] = {}  # run pk → its run token (submitted runs, once claimed)
        self.initial: dict[int, str] = {}  # the status each run was created with
        self.ended: dict[int, str] = {}  # first terminal status seen
        self.stale: dict[int, Run] = {}  # an old copy of each run, as a slow request holds it

    # --- creating runs ------------------------------------------------------------------------

    def _track(self, run: Run) -> int:
        self.initial[run.pk] = run.status
        self.stale[run.pk] = Run.objects.get(pk=run.pk)
        return run.pk

    @rule(target=runs)
    def start_logging(self):
        run = run_services.run_start_logging(Principal(self.user), self.world["experiment"], {})
        return self._track(run)

    @rule(target=runs)
    def submit(self):
        data = {"snapshot": self.world["sha256"], "script": "train.py", "compute_target": "hyp"}
        return self._track(execution.run_submit(Principal(self.user), self.world["experiment"], data))

    @rule(target=runs, parent=runs)
    def child(self, parent):
        run = Run.objects.select_related("experiment").get(pk=parent)
        return self._track(run_services.children_create(Principal(self.user), run, {"count": 1})[0])

    # --- acting on them -------------------------------------------------------------------------

    def _load(self, pk: int, stale: bool) -> Run:
        if stale:
            run = self.stale[pk]
            # A stale copy still names its experiment and submitter; only its status may be old.
            return run
        return Run.objects.select_related("experiment__workspace", "submitted_by").get(pk=pk)

    def _principal(self, pk: int, as_token: bool) -> Principal | None:
        """The caller: the user, or the run's own token through real authentication."""
        if not as_token:
            return Principal(self.user)
        key = self.keys.get(pk)
        if key is None:
            return None
        run = Run.objects.get(pk=pk)
        if run.status in TERMINAL:
            with pytest.raises(AuthenticationFailed, match="no longer valid"):
                authenticate_key(key)
            return None
        user, token_run = authenticate_key(key)
        assert token_run.pk == pk
        return Principal(user=user, run=token_run)

    def _act(self, action, pk: int, as_token: bool, stale: bool, *args):
        principal = self._principal(pk, as_token)
        if principal is None:
            return
        try:
            action(principal, self._load(pk, stale), *args)
        except REFUSALS:
            pass

    @rule(pk=runs | claimed, as_token=st.booleans(), stale=st.booleans())
    def start(self, pk, as_token, stale):
        self._act(run_services.run_start, pk, as_token, stale)

    @rule(pk=runs | claimed, as_token=st.booleans(), stale=st.booleans())
    def complete(self, pk, as_token, stale):
        self._act(run_services.run_complete, pk, as_token, stale)

    @rule(pk=runs | claimed, as_token=st.booleans(), stale=st.booleans())
    def fail(self, pk, as_token, stale):
        self._act(lambda p, r: run_services.run_fail(p, r, error_details="broken"), pk, as_token, stale)

    @rule(pk=runs | claimed, as_token=st.booleans(), stale=st.booleans())
    def cancel(self, pk, as_token, stale):
        self._act(run_services.run_cancel, pk, as_token, stale)

    @rule(pk=runs | claimed, as_token=st.booleans())
    def heartbeat(self, pk, as_token):
        self._act(run_services.heartbeat, pk, as_token, False)

    @rule(target=claimed, pk=runs)
    def claim(self, pk):
        claimed = execution.run_claim(pk, "hyp-host")
        if claimed is None:
            return multiple()
        self.keys[pk] = claimed[1]
        return pk

    @rule(pk=claimed, stale=st.booleans())
    def runner_launched(self, pk, stale):
        run = self._load(pk, stale)
        if run.is_managed and run.status not in TERMINAL:
            execution.runner_launched(run, 4242)

    @rule(pk=claimed, as_token=st.booleans())
    def runner_started(self, pk, as_token):
        self._act(lambda p, r: execution.runner_started(p, r, {"pid": 7}), pk, as_token, False)

    @rule(pk=claimed, as_token=st.booleans())
    def runner_heartbeat(self, pk, as_token):
        self._act(execution.runner_heartbeat, pk, as_token, False)

    @rule(pk=claimed, as_token=st.booleans())
    def runner_finalizing(self, pk, as_token):
        self._act(execution.runner_finalizing, pk, as_token, False)

    @rule(pk=claimed, as_token=st.booleans(), code=st.none() | st.integers(-9, 3), timed_out=st.booleans())
    def runner_exit(self, pk, as_token, code, timed_out):
        report = {"exit_code": code, "timed_out": timed_out}
        self._act(lambda p, r: execution.runner_exit(p, r, report), pk, as_token, False)

    @rule(pk=runs | claimed, stale=st.booleans())
    def poller_finds_it_lost(self, pk, stale):
        run = self._load(pk, stale)
        if run.status not in TERMINAL:
            execution.mark_lost(run, "no heartbeat (test)")

    # --- what must always hold ---------------------------------------------------------------------------

    @invariant()
    def every_change_is_allowed_recorded_and_final_where_it_must_be(self):
        for pk, initial in self.initial.items():
            run = Run.objects.get(pk=pk)
            events = list(RunEvent.objects.filter(run_id=pk).order_by("pk"))
            assert run.status in Status.values
            current = initial
            for event in events:
                assert event.from_status == current, f"run {pk}: event from {event.from_status}, was {current}"
                assert can_transition(event.from_status, event.to_status), f"{event.from_status}→{event.to_status}"
                current = event.to_status
            assert current == run.status, f"run {pk} is {run.status} but its events end at {current}"
            first_end = self.ended.get(pk)
            if first_end is None:
                if run.status in TERMINAL:
                    self.ended[pk] = run.status
                continue
            if run.status != first_end:
                # The one way out of a terminal status: fail() on a Completed run, with who and when.
                assert (first_end, run.status) == (Status.COMPLETED, Status.FAILED), f"{first_end}→{run.status}"
                marked = run.error["error"]["markedFailedAfterCompletion"]
                assert marked["by"] and marked["at"]
                last = events[-1]
                assert last.to_status == Status.FAILED and "after completion" in last.reason
                self.ended[pk] = run.status
            assert run.ended_at is not None


@pytest.fixture
def lifecycle_world(alice):
    exp = support.experiment(alice, name="exp")
    snapshot = execution.snapshot_store(
        Principal(alice), exp.workspace, io.BytesIO(support.zip_of({"train.py": "print(1)\n"}))
    )
    ComputeTarget.objects.create(workspace=exp.workspace, name="hyp", max_concurrent_runs=10_000)
    return {"user": alice, "experiment": exp, "sha256": snapshot.sha256}


@pytest.mark.django_db
def test_random_sequences_of_actions_keep_the_lifecycle(lifecycle_world):
    Lifecycle.world = lifecycle_world
    run_state_machine_as_test(
        Lifecycle,
        settings=settings(
            max_examples=EXAMPLES,
            stateful_step_count=40,
            deadline=None,
            derandomize=os.environ.get("STUDIO_FUZZ_SOAK") != "1",
            database=None,
            suppress_health_check=list(HealthCheck),
        ),
    )
    # Not vacuous: the sequences reached most of the lifecycle's transitions.
    seen = set(RunEvent.objects.values_list("from_status", "to_status").distinct())
    assert len(seen) >= 15, "only " + ", ".join(f"{a}→{b}" for a, b in sorted(seen))


# --- real threads racing on one run -----------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("round_", range(8))
def test_racing_complete_cancel_and_fail_end_in_one_state_with_one_chain_of_events(alice, round_):
    exp = support.experiment(alice, name="race")
    pk = support.run(exp, alice).pk
    actions = [run_services.run_complete, run_services.run_cancel, run_services.run_fail] * 2
    barrier = threading.Barrier(len(actions))
    errors: list[BaseException] = []

    def act(action):
        try:
            run = Run.objects.select_related("experiment__workspace").get(pk=pk)
            barrier.wait(timeout=30)
            action(Principal(alice), run)
        except REFUSALS:
            pass
        except BaseException as exc:  # anything else is a bug: report it from the main thread
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=act, args=(a,)) for a in actions]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    run = Run.objects.get(pk=pk)
    events = list(RunEvent.objects.filter(run_id=pk).order_by("pk"))
    assert run.status in TERMINAL
    chain = [Status.RUNNING] + [e.to_status for e in events]
    assert [e.from_status for e in events] == chain[:-1] and chain[-1] == run.status
    # One terminal event from Running; a second only if fail() turned Completed into Failed.
    assert len(events) in (1, 2)
    if len(events) == 2:
        assert (events[0].to_status, events[1].to_status) == (Status.COMPLETED, Status.FAILED)


# --- what the state machine found, pinned ----------------------------------------------------------------------


@pytest.mark.django_db
def test_a_fail_decided_on_a_stale_read_of_a_run_that_completed_records_who_failed_it(alice):
    exp = support.experiment(alice, name="exp")
    stale = support.run(exp, alice)  # read while Running
    run_services.run_complete(Principal(alice), Run.objects.get(pk=stale.pk))
    run_services.run_fail(Principal(alice), stale, error_details="wrong script")
    run = Run.objects.get(pk=stale.pk)
    assert run.status == Status.FAILED
    assert run.error["error"]["markedFailedAfterCompletion"]["by"] == "alice"
    assert RunEvent.objects.filter(run=run).order_by("pk").last().reason == "marked Failed after completion by alice"


@pytest.mark.django_db
def test_the_poller_never_fails_a_run_that_completed_after_it_read_it(alice):
    exp = support.experiment(alice, name="exp")
    run = support.run(exp, alice)
    execution.mark_lost(run, "no heartbeat")  # NotResponding
    stale = Run.objects.get(pk=run.pk)
    run_services.run_complete(Principal(alice), Run.objects.get(pk=run.pk))  # heard from again and completed
    execution.mark_lost(stale, "no sign of life")  # the poller acts on what it read before
    assert Run.objects.get(pk=run.pk).status == Status.COMPLETED


@pytest.mark.django_db
def test_a_status_change_and_its_event_are_stored_together_or_not_at_all(alice, monkeypatch):
    exp = support.experiment(alice, name="exp")
    run = support.run(exp, alice)

    def broken(*args, **kwargs):
        raise RuntimeError("the process died here")

    monkeypatch.setattr(RunEvent.objects, "create", broken)
    with pytest.raises(RuntimeError):
        run_services.run_complete(Principal(alice), Run.objects.get(pk=run.pk))
    assert Run.objects.get(pk=run.pk).status == Status.RUNNING
    assert not RunEvent.objects.filter(run=run).exists()
