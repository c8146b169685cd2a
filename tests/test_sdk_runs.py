"""The SDK's Run against a live studio: lifecycle, children, tags, properties, queries, files, errors."""

from __future__ import annotations

import io
import json
import socket
import threading
import time
from contextlib import contextmanager

import pytest

from runs.models import Run as RunRow
from runs.models import RunProperty, RunTag
from runs.sdk import (
    ActivityFailedException,
    AuthenticationException,
    Experiment,
    NotFoundException,
    Run,
    ServiceException,
    StudioConnectionException,
    UserErrorException,
    Workspace,
)

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def ws(studio_config) -> Workspace:
    return Workspace.from_config(studio_config)


@pytest.fixture
def exp(ws) -> Experiment:
    return Experiment(ws, "sdk-runs")


@contextmanager
def counted_requests(client):
    """Count the HTTP requests a client's session sends (the real requests still go out)."""
    calls: list[tuple[str, str]] = []
    original = client.session.request

    def request(method, url, *args, **kwargs):
        calls.append((method, url))
        return original(method, url, *args, **kwargs)

    client.session.request = request
    try:
        yield calls
    finally:
        client.session.request = original


# --- lifecycle -------------------------------------------------------------------------------------


def test_start_logging_sets_labels_and_details_follow_v1(exp):
    run = exp.start_logging(display_name="first", description="trying things", tags={"lr": 0.1})
    assert run.display_name == "first" and run.description == "trying things" and run.number == 1
    assert run.get_tags() == {"lr": "0.1"}  # non-string values are str()-ed as in v1
    details = run.get_details()
    assert details["status"] == "Running" and "endTimeUtc" not in details and details["displayName"] == "first"
    assert details["runId"] == run.id and details["number"] == 1 and details["experimentName"] == "sdk-runs"
    assert "error" not in details and "parentRunId" not in details
    run.start()  # already Running: harmless
    assert run.get_status() == "Running"
    run.display_name = "renamed"
    run.description = "better"
    assert RunRow.objects.values_list("display_name", "description").get(run_id=run.id) == ("renamed", "better")
    run.complete()
    details = run.get_details()
    assert details["status"] == "Completed" and details["endTimeUtc"] >= details["startTimeUtc"]
    assert run.get_status() == "Completed"
    assert RunRow.objects.get(run_id=run.id).heartbeat_timeout_seconds == 600


def test_context_manager_exception_marks_failed_with_the_traceback(exp):
    with pytest.raises(ValueError, match="boom"), exp.start_logging() as run:
        raise ValueError("boom")
    assert run.get_status() == "Failed"
    error = run.get_details()["error"]["error"]
    assert error["message"] == "User program failed with ValueError: boom"
    assert error["code"] == "UserError"
    assert "Traceback (most recent call last)" in error["debugInfo"]["stackTrace"]
    assert 'raise ValueError("boom")' in error["debugInfo"]["stackTrace"]


@pytest.mark.parametrize("code, status", [(0, "Completed"), (None, "Completed"), (3, "Failed")])
def test_context_manager_system_exit(exp, code, status):
    raised = False
    try:
        with exp.start_logging() as run:
            raise SystemExit(code)
    except SystemExit:
        raised = True
    assert run.get_status() == status
    assert raised == (status == "Failed")  # SystemExit(0/None) is swallowed, as in v1


def test_fail_with_a_message_a_dict_or_an_error_code(exp):
    first, second = exp.start_logging(), exp.start_logging()
    first.fail("wrong data", error_code="DataError")
    second.fail({"message": "diverged", "step": 12})
    assert first.get_details()["error"]["error"] == {"code": "DataError", "message": "wrong data"}
    assert second.get_details()["error"]["error"] == {"code": "UserError", "message": "diverged", "step": 12}


def test_cancel_and_final_statuses(exp):
    run = exp.start_logging()
    run.cancel()
    assert run.get_status() == "Canceled"
    with pytest.raises(ServiceException) as refused:
        run.complete()
    assert refused.value.status_code == 409 and "Canceled" in str(refused.value)


def test_get_status_stops_asking_once_final(exp):
    run = exp.start_logging()
    run.complete()
    with counted_requests(run._client) as calls:
        assert run.get_status() == "Completed"
    assert calls == []


def test_run_get_and_list_by_status(ws, exp):
    done, active = exp.start_logging(), exp.start_logging()
    done.complete()
    again = Run.get(ws, done.id)
    assert again.id == done.id and again.experiment.name == "sdk-runs" and again.status == "Completed"
    assert [r.id for r in Run.list(exp, status="Running")] == [active.id]
    assert [r.id for r in Run.list(exp)] == [active.id, done.id]  # newest first
    with pytest.raises(NotFoundException) as missing:
        Run.get(ws, "no-such-run")
    assert str(missing.value) == "run 'no-such-run' does not exist or is not visible to you"


def test_wait_for_completion_streams_the_driver_log_and_raises_on_failure(exp, api, capsys, monkeypatch):
    monkeypatch.setenv("STUDIO_RUN_POLLING_INTERVAL_MIN", "0.05")
    monkeypatch.setenv("STUDIO_RUN_POLLING_INTERVAL_MAX", "0.2")
    run = exp.start_logging()
    log_url = f"/api/runs/{run.id}/logs/content/?name=azureml-logs/70_driver_log.txt"

    def script():
        api.generic("POST", f"{log_url}&offset=0", b"epoch 1\n", content_type="application/octet-stream")
        time.sleep(0.5)
        api.generic("POST", f"{log_url}&offset=8", "epoch 2 ✓\n".encode(), content_type="application/octet-stream")
        time.sleep(0.3)
        api.post(f"/api/runs/{run.id}/fail/", {"error_details": "loss is NaN"}, format="json")

    worker = threading.Thread(target=script)
    worker.start()
    with pytest.raises(ActivityFailedException) as failed:
        run.wait_for_completion(show_output=True)
    worker.join()
    out = capsys.readouterr().out
    assert out.startswith(f"RunId: {run.id}\nWeb View: http")
    assert "Streaming azureml-logs/70_driver_log.txt" in out and "epoch 1\nepoch 2 ✓\n" in out
    assert "Execution Summary" in out and "Status: Failed" in out
    assert failed.value.error["error"]["message"] == "loss is NaN"
    assert run.wait_for_completion(raise_on_error=False)["status"] == "Failed"
    details = run.get_details_with_logs()
    assert details["logFiles"] == {"azureml-logs/70_driver_log.txt": "epoch 1\nepoch 2 ✓\n"}


# --- children ------------------------------------------------------------------------------------------


def test_create_children_is_one_request_with_numbers_parent_and_batch_tag(exp):
    parent = exp.start_logging()
    with counted_requests(parent._client) as calls:
        children = parent.create_children(count=1000)
    assert len(calls) == 1 and calls[0][0] == "POST" and calls[0][1].endswith(f"/api/runs/{parent.id}/children/")
    assert len(children) == 1000 and all(c.status == "Running" for c in children)
    assert [c.tags["azureml.batch_child_number"] for c in children] == [str(i) for i in range(1000)]
    assert len({c.number for c in children}) == 1000 and min(c.number for c in children) == 2
    rows = RunRow.objects.filter(parent__run_id=parent.id)
    assert rows.count() == 1000 and set(rows.values_list("heartbeat_timeout_seconds", flat=True)) == {600.0}
    assert RunTag.objects.filter(run__in=rows, key="azureml.batch_child_number").count() == 1000
    assert children[7].parent.id == parent.id


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({}, "either count"),
        ({"count": 0}, "positive integer"),
        ({"count": 10_001}, "can not create more than 10000 runs"),
        ({"count": 2, "tag_key": "k", "tag_values": ["a", "b"]}, "not both"),
        ({"tag_key": "fruit"}, "together"),
        ({"tag_values": ["Apple"]}, "together"),
        ({"tag_key": "fruit", "tag_values": "Apple"}, "list of values"),
    ],
)
def test_create_children_refuses_bad_combinations_before_any_request(exp, kwargs, message):
    parent = exp.start_logging()
    with counted_requests(parent._client) as calls, pytest.raises(UserErrorException, match=message):
        parent.create_children(**kwargs)
    assert calls == []


def test_child_run_and_filtered_children(exp):
    parent = exp.start_logging()
    with parent.child_run(name="fold-1") as child:
        child.tag("fold", "1")
        grandchild = child.child_run()
    assert child.display_name == "fold-1" and child.parent.id == parent.id
    fruit = parent.create_children(tag_key="fruit", tag_values=["Apple", "Banana", None])
    assert [c.get_tags() for c in fruit] == [{"fruit": "Apple"}, {"fruit": "Banana"}, {"fruit": None}]
    assert {c.id for c in parent.get_children()} == {child.id, *(c.id for c in fruit)}
    assert [c.id for c in parent.get_children(tags={"fruit": "Banana"})] == [fruit[1].id]
    assert {c.id for c in parent.get_children(tags="fruit")} == {c.id for c in fruit}
    assert [c.id for c in parent.get_children(status="Completed")] == [child.id]
    assert grandchild.id in {c.id for c in parent.get_children(recursive=True)}
    assert grandchild.id not in {c.id for c in parent.get_children()}
    assert [c.id for c in parent.get_children(recursive=True, tags={"fold": "1"})] == [child.id]


# --- tags, properties, queries ----------------------------------------------------------------------


def test_tags_merge_remove_and_stay_mutable(exp):
    run = exp.start_logging()
    run.set_tags({"a": "1", "b": "2"})
    run.set_tags({"b": "3", "c": None})
    assert run.get_tags() == {"a": "1", "b": "3", "c": None}
    run.remove_tags(["a", "missing"])
    assert run.get_tags() == {"b": "3", "c": None} and run.tags == {"b": "3", "c": None}
    with pytest.raises(UserErrorException):
        run.remove_tags("b")  # a str would remove its characters; refuse it
    with pytest.raises(UserErrorException):
        run.set_tags("b")


def test_changing_a_property_raises_the_servers_message_and_keeps_the_value(exp):
    run = exp.start_logging()
    run.add_properties({"author": "azureml-user", "seed": 7})
    with pytest.raises(ServiceException) as refused:
        run.add_properties({"author": "different-user"})
    assert str(refused.value) == (
        "property 'author' is already set to 'azureml-user'; properties are immutable, so it cannot become "
        "'different-user' (use a tag for values that change)"
    )
    assert refused.value.status_code == 409 and refused.value.code == "property_immutable"
    stored = dict(RunProperty.objects.filter(run__run_id=run.id).values_list("key", "value"))
    assert stored == {"author": "azureml-user", "seed": "7"}
    assert run.get_properties() == stored


def test_get_runs_filters_str_is_presence_dict_is_all_pairs_list_is_refused(exp):
    a, b, c = exp.start_logging(), exp.start_logging(), exp.start_logging()
    a.set_tags({"quality": "fantastic run", "team": "x"})
    b.set_tags({"quality": "great run", "worth another look": None})
    c.set_tags({"worth another look": "yes"})
    a.add_properties({"author": "azureml-user"})
    b.add_properties({"author": "azureml-user"})

    def ids(**filters):
        return [r.id for r in exp.get_runs(**filters)]

    assert ids(tags="worth another look") == [c.id, b.id]
    assert ids(tags={"quality": "fantastic run", "team": "x"}) == [a.id]
    assert ids(tags={"quality": "fantastic run", "team": "y"}) == []
    assert ids(tags={"worth another look": None}) == [b.id]
    assert ids(properties={"author": "azureml-user"}, tags="quality") == [b.id, a.id]
    with counted_requests(exp.workspace._client) as calls:
        with pytest.raises(ValueError, match=r"Unknown filter type for run tags: <class 'list'>"):
            exp.get_runs(tags=["quality"])
        with pytest.raises(ValueError, match=r"Unknown filter type for run properties: <class 'list'>"):
            exp.get_runs(properties=["author"])
    assert calls == []


def test_get_runs_pages_through_more_than_500_runs(exp):
    parent = exp.start_logging()
    parent.create_children(count=600)
    with counted_requests(exp.workspace._client) as calls:
        runs = list(exp.get_runs(include_children=True))
    assert len(runs) == 601 and len(calls) == 2
    assert [r.number for r in runs] == list(range(601, 0, -1))
    assert [r.id for r in exp.get_runs()] == [parent.id]


def test_experiment_list_and_workspace_views(ws, exp):
    Experiment(ws, "another")
    assert [e.name for e in Experiment.list(ws)] == ["another", "sdk-runs"]
    assert set(ws.experiments) == {"another", "sdk-runs"}
    local = ws.compute_targets["local"]
    assert (local.name, local.kind) == ("local", "local") and local.max_concurrent_runs >= 1
    with pytest.raises(ServiceException, match="experiment name"):
        Experiment(ws, "-bad name")


# --- files ---------------------------------------------------------------------------------------------


def test_files_upload_download_and_write_once(exp, tmp_path, monkeypatch):
    run = exp.start_logging()
    model = tmp_path / "model.bin"
    model.write_bytes(b"\x00weights\xff")
    run.upload_file("outputs/model.bin", str(model))
    run.upload_file("notes.txt", io.BytesIO(b"hello"))
    folder = tmp_path / "plots"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.txt").write_text("A")
    (folder / "sub" / "b.txt").write_text("B")
    run.upload_folder("plots", folder)
    assert run.get_file_names() == ["notes.txt", "outputs/model.bin", "plots/a.txt", "plots/sub/b.txt"]
    with pytest.raises(ServiceException) as conflict:
        run.upload_file("notes.txt", io.BytesIO(b"again"))
    assert conflict.value.status_code == 409 and "write-once" in str(conflict.value)

    monkeypatch.chdir(tmp_path)
    assert run.download_file("outputs/model.bin") == "model.bin"
    assert (tmp_path / "model.bin").read_bytes() == b"\x00weights\xff"
    target = tmp_path / "dl"
    target.mkdir()
    assert run.download_file("notes.txt", target) == str(target / "notes.txt")
    saved = run.download_files(prefix="plots", output_directory=tmp_path / "all")
    assert sorted(saved) == [str(tmp_path / "all/plots/a.txt"), str(tmp_path / "all/plots/sub/b.txt")]
    saved = run.download_files(prefix="plots/", output_directory=tmp_path / "flat", append_prefix=False)
    assert (tmp_path / "flat/sub/b.txt").read_text() == "B" and len(saved) == 2
    with pytest.raises(NotFoundException):
        run.download_file("nope.txt", tmp_path / "nope.txt")


def test_complete_uploads_the_outputs_folder(exp, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "outputs").mkdir()
    (tmp_path / "outputs" / "model.pkl").write_bytes(b"pickle")
    with exp.start_logging() as run:
        pass
    assert run.get_file_names() == ["outputs/model.pkl"]
    with exp.start_logging(outputs=False) as other:
        pass
    assert other.get_file_names() == []


# --- errors ----------------------------------------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_an_unreachable_studio_is_a_clear_message_naming_the_url(monkeypatch):
    monkeypatch.setenv("STUDIO_HTTP_RETRY_SECONDS", "0")
    url = f"http://127.0.0.1:{_closed_port()}"
    with pytest.raises(StudioConnectionException) as down:
        Workspace(url=url, name="team-a", token="rs_x")
    assert str(down.value).startswith(f"could not reach the studio at {url} (GET {url}/api/workspaces/team-a/)")
    assert "Connection refused" in str(down.value)


def test_a_bad_token_or_a_foreign_workspace_is_refused_with_the_servers_message(live_server, alice, bob_key):
    with pytest.raises(AuthenticationException, match="invalid or revoked API token"):
        Workspace(url=live_server.url, name="team-a", token="rs_not-a-token")
    with pytest.raises(NotFoundException) as hidden:
        Workspace(url=live_server.url, name="team-a", token=bob_key)
    assert str(hidden.value) == "workspace 'team-a' does not exist or you are not a member of it"


def test_heartbeats_while_alive_and_never_after_complete(exp, monkeypatch):
    monkeypatch.setenv("STUDIO_HEARTBEAT_INTERVAL_SECONDS", "0.2")
    run = exp.start_logging()
    row = RunRow.objects.get(run_id=run.id)
    first = row.last_heartbeat_at
    deadline = time.monotonic() + 10
    while RunRow.objects.get(run_id=run.id).last_heartbeat_at == first and time.monotonic() < deadline:
        time.sleep(0.1)
    assert RunRow.objects.get(run_id=run.id).last_heartbeat_at > first
    run.complete()
    ended = RunRow.objects.get(run_id=run.id).last_heartbeat_at
    time.sleep(1.0)
    assert RunRow.objects.get(run_id=run.id).last_heartbeat_at == ended


def test_repr_and_json_of_details(exp):
    run = exp.start_logging()
    assert f"Id: {run.id}" in repr(run) and "Status: Running" in repr(run)
    json.dumps(run.get_details())  # plain JSON, as v1's


def test_a_completed_parent_still_gets_children_as_spec_section_1_does(exp):
    """SPEC §1 calls create_children after the `with` block has completed the parent (v1 allows it)."""
    with exp.start_logging() as parent:
        pass
    children = parent.create_children(count=3)
    child = parent.child_run("late")
    assert parent.get_status() == "Completed"
    assert {c.id for c in parent.get_children()} == {*(c.id for c in children), child.id}
