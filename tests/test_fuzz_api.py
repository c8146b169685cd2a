"""Schema fuzzing: every operation of /api/schema/, driven by schemathesis, in-process (WSGI).

Each generated request is sent anonymously, as bob (a member of another
workspace) and as alice (a member of team-a, whose objects the path parameters
name most of the time); when it names a submitted run that is executing, also
with that run's own token (what its runner holds). Checks on every response:
no 5xx; the status code, content type, headers and body are the ones the schema
documents; a request the schema forbids is refused; no API token appears in a
body. Beyond the schema: anonymous callers get 401, bob never gets a 2xx on
team-a's objects, and neither of them changes anything that is stored.

`make test` runs STUDIO_FUZZ_EXAMPLES examples per operation (default 10,
derandomized so CI is repeatable); `make soak` (tests/benchmarks/soak_fuzz.py)
runs many more with fresh randomness.
"""

from __future__ import annotations

import io
import json
import os

import pytest
import schemathesis
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from runs.access import Principal
from runs.lifecycle import Status
from runs.models import (
    ComputeTarget,
    Experiment,
    LogFile,
    MetricBatch,
    Run,
    RunEvent,
    RunFile,
    RunProperty,
    RunTag,
    Snapshot,
)
from runs.services import execution, files, logs, workspaces
from runs.services import runs as run_services
from runs.tokens import hash_key, new_run_key
from tests import test_views_support as support

EXAMPLES = int(os.environ.get("STUDIO_FUZZ_EXAMPLES", "10"))
SOAK = os.environ.get("STUDIO_FUZZ_SOAK") == "1"
# Where to append one line per request (operation, principal, status) for the soak's figures.
STATS = os.environ.get("STUDIO_FUZZ_STATS")

# Django's own test client keeps the test's database connection open across
# requests the same way: the handler would otherwise close it at each request's
# end, ending the transaction that isolates the test.
APP = WSGIHandler()
schema = schemathesis.openapi.from_wsgi("/api/schema/", APP)


@schemathesis.check
def typed_data_rejection(ctx, response, case):
    """negative_data_rejection, except for types in multipart forms, where every value is text."""
    if case.media_type == "multipart/form-data":
        return None
    return negative_data_rejection(ctx, response, case)


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    typed_data_rejection,
]


@pytest.fixture
def keep_connection():
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


class World:
    """team-a's objects that path and query parameters point at, and bob's key."""

    def __init__(self, alice, bob):
        self.alice = alice
        self.principal = Principal(alice)
        self.alice_key = workspaces.token_create(alice, "fuzz")[1]
        self.bob_key = workspaces.token_create(bob, "fuzz")[1]
        self.experiment = support.experiment(alice, name="exp")
        self.workspace = self.experiment.workspace
        self.parent = support.run(self.experiment, alice, tags={"k": "v"}, metrics={"loss": [1.0, 0.5]})
        run_services.children_create(self.principal, self.parent, {"count": 2})
        logs.log_append(self.parent, logs.DRIVER_LOG, 0, b"secret log line\n")
        files.file_upload(self.parent, "outputs/a.txt", io.BytesIO(b"secret file"))
        snapshot = execution.snapshot_store(
            self.principal, self.workspace, io.BytesIO(support.zip_of({"train.py": "print(1)\n"}))
        )
        self.sha256 = snapshot.sha256
        self.submitted = execution.run_submit(
            self.principal, self.experiment, {"snapshot": self.sha256, "script": "train.py"}
        )
        self.completed = support.run(self.experiment, alice, finish="complete")
        self.secrets = [self.alice_key, self.bob_key]

    def run_ids(self) -> list[str]:
        return [self.parent.run_id, self.submitted.run_id, self.completed.run_id]

    def fresh_run(self) -> str:
        return run_services.run_start_logging(self.principal, self.experiment, {}).run_id

    def fresh_runner_run(self) -> tuple[str, str]:
        """A submitted run that is Running, and its run token (what a runner holds)."""
        run = execution.run_submit(self.principal, self.experiment, {"snapshot": self.sha256, "script": "train.py"})
        key = new_run_key()
        run_services.transition(run, Status.PREPARING, reason="fuzz", host="fuzz-host", token_hash=hash_key(key))
        run_services.transition(run, Status.RUNNING, reason="fuzz")
        self.secrets.append(key)
        return run.run_id, key

    def ensure_target(self, name: str) -> None:
        if not ComputeTarget.objects.filter(workspace=self.workspace, name=name).exists():
            workspaces.compute_target_create(self.principal, self.workspace, {"name": name})

    def fingerprint(self) -> tuple:
        """What a refused request must leave as it was."""
        counted = (Run, RunTag, RunProperty, RunEvent, MetricBatch, LogFile, RunFile, Experiment, ComputeTarget)
        return (
            tuple(model.objects.count() for model in counted),
            tuple(Snapshot.objects.values_list("sha256", flat=True).order_by("sha256")),
            tuple(Run.objects.order_by("pk").values_list("status", "display_name", "description")),
            tuple(RunTag.objects.order_by("pk").values_list("key", "value")),
        )


@pytest.fixture
def world(alice, bob, keep_connection):
    return World(alice, bob)


QUERY_NAMES = {
    "/api/runs/{run_id}/logs/content/": logs.DRIVER_LOG,
    "/api/runs/{run_id}/files/content/": "outputs/a.txt",
    "/api/runs/{run_id}/metrics/points/": "loss",
}


# What the SDK sends: numbers, text, booleans, null, and the wire form of NaN and ±inf.
METRIC_VALUES = (
    st.floats(allow_nan=False, allow_infinity=False)
    | st.integers(-(2**53), 2**53)
    | st.text(max_size=5)
    | st.booleans()
    | st.none()
    | st.sampled_from([{"$float": "NaN"}, {"$float": "Infinity"}, {"$float": "-Infinity"}])
)


class Aim:
    """Where a case points: at team-a's objects or not, and the run token of the run it names, if any."""

    def __init__(self):
        self.touches_team_a = False
        self.run_key: str | None = None


def aim_at_team_a(case, world: World, data) -> Aim:
    """Point path parameters (and names, bodies) at real objects most of the time."""
    aim = Aim()
    params = case.path_parameters or {}
    for key in list(params):
        if data.draw(st.integers(0, 9), label=f"keep fuzzed {key}") >= 8:
            continue
        if key == "workspace":
            params[key] = world.workspace.name
        elif key == "experiment":
            params[key] = world.experiment.name
        elif key == "sha256":
            params[key] = world.sha256
        elif key == "name":
            target = data.draw(st.sampled_from(["local", "gpu"]), label="compute")
            world.ensure_target(target)
            params[key] = target
        elif key == "run_id":
            # The run holding the log, file and metric that name= parameters point at comes first.
            choice = data.draw(st.sampled_from([*world.run_ids(), "fresh", "runner"]), label="run")
            if choice == "fresh":
                params[key] = world.fresh_run()
            elif choice == "runner":
                params[key], aim.run_key = world.fresh_runner_run()
            else:
                params[key] = choice
        else:
            pytest.fail(f"path parameter '{key}' of {case.path} has no real object here: add one to aim_at_team_a")
        aim.touches_team_a = True
    name = QUERY_NAMES.get(case.path)
    if name and case.query is not None and "name" in case.query and data.draw(st.booleans(), label="real name"):
        case.query["name"] = name
    if data.draw(st.booleans(), label="real body"):
        real_body(case, world, data)
    return aim


def real_body(case, world: World, data) -> None:
    """Bodies the schema cannot say enough about to be accepted by chance: a zip, a stored snapshot's sha.

    Assigned whole (never changed in place) so schemathesis re-checks whether a
    negative case is still negative.
    """
    body = case.body
    if case.path.endswith("/snapshots/") and case.media_type == "application/zip":
        files = data.draw(st.dictionaries(st.from_regex(r"[a-z]{1,8}\.py", fullmatch=True), st.text(), max_size=3))
        case.body = support.zip_of(files or {"a.py": ""})
    elif case.path.endswith("/submit/") and isinstance(body, dict):
        case.body = {
            **{k: v for k, v in body.items() if k != "command"},
            "snapshot": world.sha256,
            "script": "train.py",
        }
    elif case.path.endswith("/metrics/") and case.method == "POST" and isinstance(body, dict):
        values = data.draw(st.lists(METRIC_VALUES, min_size=1))
        series = [{"name": "fuzz", "values": values, "times": [1.0] * len(values)}]
        case.body = {**body, "series": series}


def record(case, who: str, response) -> None:
    if STATS:
        with open(STATS, "a") as fh:
            fh.write(
                json.dumps({"op": f"{case.method} {case.path}", "who": who, "status": response.status_code}) + "\n"
            )


def check_body_holds_no_token(response, world: World) -> None:
    for key in world.secrets:
        assert key.encode() not in response.content, "an API token appeared in a response body"


@schema.parametrize()
@schema.given(data=st.data())
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=not SOAK,
    database=None,
    suppress_health_check=list(HealthCheck),
)
@pytest.mark.django_db
def test_every_operation_answers_as_documented(case, data, world):
    aim = aim_at_team_a(case, world, data)
    before = world.fingerprint()

    anonymous = case.call()
    record(case, "anonymous", anonymous)
    case.validate_response(anonymous, checks=CHECKS)
    # A NUL anywhere in the address is refused at the door (400), before anyone is asked who they are.
    refused_at_the_door = anonymous.status_code == 400 and "NUL character" in anonymous.json().get("detail", "")
    if case.path != "/api/health/" and not refused_at_the_door:
        assert anonymous.status_code == 401, f"anonymous {case.method} {case.formatted_path} -> {anonymous.status_code}"

    other = case.call(headers={"Authorization": f"Token {world.bob_key}"})
    record(case, "other-workspace", other)
    case.validate_response(other, checks=CHECKS)
    check_body_holds_no_token(other, world)
    if aim.touches_team_a:
        assert not 200 <= other.status_code < 300, (
            f"bob {case.method} {case.formatted_path} -> {other.status_code}: {other.content[:300]!r}"
        )
    assert world.fingerprint() == before, f"a refused {case.method} {case.formatted_path} changed stored data"

    if aim.run_key:
        # The runner's own token: the only caller the runner reports accept.
        runner = case.call(headers={"Authorization": f"Token {aim.run_key}"})
        record(case, "run-token", runner)
        case.validate_response(runner, checks=CHECKS)
        check_body_holds_no_token(runner, world)

    member = case.call(headers={"Authorization": f"Token {world.alice_key}"})
    record(case, "member", member)
    case.validate_response(member, checks=CHECKS)
    check_body_holds_no_token(member, world)


def test_the_schema_documents_every_api_route():
    """The fuzzer only reaches what the schema lists: a route missing from it would go unfuzzed."""
    from runs.api import urls as api_urls

    documented = {path for path in schema.raw_schema["paths"]}
    for pattern in api_urls.urlpatterns:
        if pattern.name in ("schema", "docs"):
            continue
        route = "/api/" + str(pattern.pattern).replace("<str:", "{").replace(">", "}")
        assert route in documented, f"{route} is not in /api/schema/"
