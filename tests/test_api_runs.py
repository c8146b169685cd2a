"""The run API: lifecycle, children, tags, properties, metrics, logs, files, bad input."""

from __future__ import annotations

import io
import json
import math

import pytest

from runs.models import Run, RunProperty

pytestmark = pytest.mark.django_db

EXP = "/api/workspaces/team-a/experiments/explore-runs"


@pytest.fixture
def experiment(api):
    assert api.post("/api/workspaces/team-a/experiments/", {"name": "explore-runs"}, format="json").status_code == 201
    return EXP


@pytest.fixture
def run_id(api, experiment):
    response = api.post(f"{experiment}/runs/", {}, format="json")
    assert response.status_code == 201, response.content
    return response.json()["run_id"]


def test_experiment_is_created_once_then_returned(api):
    first = api.post("/api/workspaces/team-a/experiments/", {"name": "exp1"}, format="json")
    second = api.post("/api/workspaces/team-a/experiments/", {"name": "exp1"}, format="json")
    assert (first.status_code, second.status_code) == (201, 200)


def test_it_rejects_a_bad_experiment_name(api):
    response = api.post("/api/workspaces/team-a/experiments/", {"name": "-bad name"}, format="json")
    assert response.status_code == 400
    assert "experiment name" in response.json()["detail"]


def test_start_logging_creates_a_running_run_with_numbers(api, experiment):
    first = api.post(f"{experiment}/runs/", {}, format="json").json()
    second = api.post(f"{experiment}/runs/", {"display_name": "two"}, format="json").json()
    assert first["status"] == "Running" and first["start_time_utc"] and first["end_time_utc"] is None
    assert (first["number"], second["number"]) == (1, 2)
    assert second["display_name"] == "two"


def test_complete_then_complete_again_is_harmless(api, run_id):
    assert api.post(f"/api/runs/{run_id}/complete/").json()["status"] == "Completed"
    assert api.post(f"/api/runs/{run_id}/complete/").status_code == 200


def test_an_illegal_transition_is_409_naming_both_statuses(api, run_id):
    api.post(f"/api/runs/{run_id}/cancel/")
    response = api.post(f"/api/runs/{run_id}/complete/")
    assert response.status_code == 409
    body = response.json()
    assert "Canceled" in body["detail"] and "Completed" in body["detail"]
    assert (body["current"], body["requested"]) == ("Canceled", "Completed")


def test_fail_on_a_completed_run_records_who_and_when(api, run_id):
    api.post(f"/api/runs/{run_id}/complete/")
    response = api.post(f"/api/runs/{run_id}/fail/", {"error_details": "wrong script"}, format="json")
    assert response.status_code == 200
    error = response.json()["error"]["error"]
    assert error["message"] == "wrong script"
    assert error["markedFailedAfterCompletion"]["by"] == "alice"
    events = api.get(f"/api/runs/{run_id}/events/").json()
    assert events[-1]["to_status"] == "Failed" and events[-1]["actor"] == "alice"


def test_failed_is_final(api, run_id):
    api.post(f"/api/runs/{run_id}/fail/", {}, format="json")
    assert api.post(f"/api/runs/{run_id}/start/").status_code == 409
    assert api.post(f"/api/runs/{run_id}/fail/", {}, format="json").status_code == 200  # same status: no-op


def test_create_children_by_count_in_one_request(api, run_id):
    response = api.post(f"/api/runs/{run_id}/children/", {"count": 1000}, format="json")
    assert response.status_code == 201
    children = response.json()["results"]
    assert len(children) == 1000
    assert all(c["parent_run_id"] == run_id and c["status"] == "Running" for c in children)
    assert sorted(int(c["tags"]["azureml.batch_child_number"]) for c in children) == list(range(1000))
    assert len({c["number"] for c in children}) == 1000


def test_create_children_by_tag_values(api, run_id):
    children = api.post(
        f"/api/runs/{run_id}/children/", {"tag_key": "fruit", "tag_values": ["Apple", "Banana"]}, format="json"
    ).json()["results"]
    assert [c["tags"] for c in children] == [{"fruit": "Apple"}, {"fruit": "Banana"}]


@pytest.mark.parametrize(
    "body, message",
    [
        ({"count": 10001}, "limit is 10000"),
        ({"count": 0}, "positive"),
        ({"tag_key": "fruit"}, "either count"),
        ({"count": 2, "tag_key": "a", "tag_values": ["x"]}, "either count"),
        ({}, "either count"),
    ],
)
def test_it_refuses_bad_children_requests(api, run_id, body, message):
    response = api.post(f"/api/runs/{run_id}/children/", body, format="json")
    assert response.status_code == 400
    assert message in response.json()["detail"]
    assert Run.objects.filter(parent__run_id=run_id).count() == 0


def test_recursive_children_include_grandchildren(api, run_id):
    child = api.post(f"/api/runs/{run_id}/children/", {"count": 1}, format="json").json()["results"][0]
    api.post(f"/api/runs/{child['run_id']}/children/", {"count": 2}, format="json")
    direct = api.get(f"/api/runs/{run_id}/children/").json()["results"]
    everyone = api.get(f"/api/runs/{run_id}/children/?recursive=true").json()["results"]
    assert len(direct) == 1 and len(everyone) == 3


def test_tags_are_mutable_and_may_be_none(api, run_id):
    api.patch(f"/api/runs/{run_id}/tags/", {"quality": "great run"}, format="json")
    api.patch(f"/api/runs/{run_id}/tags/", {"quality": "fantastic run", "worth another look": None}, format="json")
    assert api.get(f"/api/runs/{run_id}/tags/").json() == {"quality": "fantastic run", "worth another look": None}
    remaining = api.post(f"/api/runs/{run_id}/tags/remove/", {"keys": ["quality"]}, format="json").json()
    assert remaining == {"worth another look": None}


def test_it_rejects_changing_a_property(api, run_id):
    assert api.post(f"/api/runs/{run_id}/properties/", {"author": "azureml-user"}, format="json").status_code == 200
    assert api.post(f"/api/runs/{run_id}/properties/", {"author": "azureml-user"}, format="json").status_code == 200
    response = api.post(f"/api/runs/{run_id}/properties/", {"author": "different-user", "x": "1"}, format="json")
    assert response.status_code == 409
    assert response.json()["detail"].startswith(
        "property 'author' is already set to 'azureml-user'; properties are immutable"
    )
    assert dict(RunProperty.objects.filter(run__run_id=run_id).values_list("key", "value")) == {
        "author": "azureml-user"
    }


def test_run_list_filters_by_tags_and_properties_in_the_database(api, experiment):
    ids = [api.post(f"{experiment}/runs/", {}, format="json").json()["run_id"] for _ in range(3)]
    api.post(f"/api/runs/{ids[0]}/properties/", {"author": "azureml-user"}, format="json")
    api.post(f"/api/runs/{ids[1]}/properties/", {"author": "azureml-user"}, format="json")
    api.patch(f"/api/runs/{ids[0]}/tags/", {"quality": "fantastic run"}, format="json")
    api.patch(f"/api/runs/{ids[1]}/tags/", {"worth another look": None}, format="json")

    def listed(**params):
        query = "&".join(f"{k}={json.dumps(v)}" for k, v in params.items())
        return [r["run_id"] for r in api.get(f"{experiment}/runs/?{query}").json()["results"]]

    assert listed(properties={"author": "azureml-user"}, tags={"quality": "fantastic run"}) == [ids[0]]
    assert listed(properties={"author": "azureml-user"}, tags="worth another look") == [ids[1]]
    assert api.get(f"{experiment}/runs/?tags=[1,2]").status_code == 400


def test_run_list_pages_with_a_continuation(api, experiment):
    for _ in range(5):
        api.post(f"{experiment}/runs/", {}, format="json")
    first = api.get(f"{experiment}/runs/?page_size=2").json()
    second = api.get(f"{experiment}/runs/?page_size=2&continuation={first['continuation']}").json()
    third = api.get(f"{experiment}/runs/?page_size=2&continuation={second['continuation']}").json()
    numbers = [r["number"] for page in (first, second, third) for r in page["results"]]
    assert numbers == [5, 4, 3, 2, 1] and third["continuation"] is None


def _batch(batch_id, values, name="loss", **extra):
    return {"batch_id": batch_id, "series": [{"name": name, "values": values, "times": [1.0] * len(values), **extra}]}


def test_metric_batches_are_stored_once(api, run_id):
    assert api.post(f"/api/runs/{run_id}/metrics/", _batch("b1", [1.0, 2.0]), format="json").json()["stored"] == 2
    again = api.post(f"/api/runs/{run_id}/metrics/", _batch("b1", [1.0, 2.0]), format="json").json()
    assert again["duplicate"] is True
    api.post(f"/api/runs/{run_id}/metrics/", _batch("b2", [3.0]), format="json")
    assert api.get(f"/api/runs/{run_id}/metrics/").json() == {"loss": [1.0, 2.0, 3.0]}


def test_metric_values_of_every_scalar_type_round_trip(api, run_id):
    values = [1, 2.5, True, "text", None, {"$float": "NaN"}, {"$float": "Infinity"}, {"$float": "-Infinity"}]
    api.post(f"/api/runs/{run_id}/metrics/", _batch("b1", values), format="json")
    assert api.get(f"/api/runs/{run_id}/metrics/").json()["loss"] == values
    points = api.get(f"/api/runs/{run_id}/metrics/points/?name=loss").json()
    assert points["steps"] == list(range(8))


@pytest.mark.parametrize(
    "values, message",
    [
        ([[1, 2]], "log_list"),
        ([{"a": 1}], "log numbers"),
        ([2**60], "2**53"),
        (["x" * 5000], "limit is 4096"),
    ],
)
def test_it_refuses_bad_metric_values_and_stores_nothing(api, run_id, values, message):
    body = _batch("bad", [1.0, *values])
    response = api.post(f"/api/runs/{run_id}/metrics/", body, format="json")
    assert response.status_code == 400 and message in response.json()["detail"]
    assert api.get(f"/api/runs/{run_id}/metrics/").json() == {}


def test_malformed_json_is_400(api, run_id):
    response = api.generic("POST", f"/api/runs/{run_id}/metrics/", "{not json", content_type="application/json")
    assert response.status_code == 400 and "malformed JSON" in response.json()["detail"]


def test_a_metric_name_keeps_its_kind(api, run_id):
    api.post(f"/api/runs/{run_id}/metrics/", _batch("b1", [1.0]), format="json")
    response = api.post(f"/api/runs/{run_id}/metrics/", _batch("b2", [[1]], kind="list"), format="json")
    assert response.status_code == 409


def test_list_row_and_table_metrics(api, run_id):
    body = {
        "batch_id": "b1",
        "series": [
            {"name": "l", "kind": "list", "values": [[1, 2, 3]], "times": [1.0]},
            {"name": "r", "kind": "row", "values": [{"a": 1, "b": 2}, {"a": 3, "b": 4}], "times": [1.0, 2.0]},
            {"name": "t", "kind": "table", "values": [{"x": [1, 2], "y": [3, 4]}], "times": [1.0]},
        ],
    }
    assert api.post(f"/api/runs/{run_id}/metrics/", body, format="json").status_code == 200
    assert api.get(f"/api/runs/{run_id}/metrics/").json() == {
        "l": [1, 2, 3],
        "r": {"a": [1, 3], "b": [2, 4]},
        "t": {"x": [1, 2], "y": [3, 4]},
    }


def test_downsampled_points_keep_extremes(api, run_id):
    values = [float(i % 100) for i in range(10_000)]
    values[5000] = 1e6
    api.post(f"/api/runs/{run_id}/metrics/", _batch("b1", values), format="json")
    points = api.get(f"/api/runs/{run_id}/metrics/points/?name=loss&max_points=200").json()
    assert points["total"] == 10_000 and points["downsampled"]
    assert len(points["values"]) <= 200 and 1e6 in points["values"]


def test_log_appends_are_idempotent_by_offset(api, run_id):
    url = f"/api/runs/{run_id}/logs/content/?name=azureml-logs/70_driver_log.txt"
    post = lambda offset, data: api.generic(  # noqa: E731
        "POST", f"{url}&offset={offset}", data, content_type="application/octet-stream"
    )
    assert post(0, b"hello ").json() == {"name": "azureml-logs/70_driver_log.txt", "size": 6, "stored": 6}
    assert post(0, b"hello ").json()["stored"] == 0  # a retry
    assert post(3, b"lo world\n").json() == {"name": "azureml-logs/70_driver_log.txt", "size": 12, "stored": 6}
    assert post(99, b"x").status_code == 409
    response = api.get(f"{url}&offset=6")
    assert response.content == b"world\n" and response["X-Log-Size"] == "12"


@pytest.mark.parametrize("name", ["../escape.txt", "/etc/passwd", "a/../../b", "nul\x00name", "x" * 2000])
def test_log_and_file_names_cannot_leave_the_run(api, run_id, name):
    response = api.generic(
        "POST",
        f"/api/runs/{run_id}/logs/content/",
        b"x",
        content_type="application/octet-stream",
        QUERY_STRING=f"name={name}&offset=0",
    )
    assert response.status_code == 400
    upload = api.post(f"/api/runs/{run_id}/files/", {"name": name, "file": io.BytesIO(b"x")}, format="multipart")
    assert upload.status_code == 400


def test_files_are_write_once(api, run_id):
    def upload():
        return api.post(
            f"/api/runs/{run_id}/files/",
            {"name": "outputs/model.txt", "file": io.BytesIO(b"weights")},
            format="multipart",
        )

    assert upload().status_code == 201
    assert upload().status_code == 409
    assert [f["path"] for f in api.get(f"/api/runs/{run_id}/files/").json()] == ["outputs/model.txt"]
    assert (
        b"".join(api.get(f"/api/runs/{run_id}/files/content/?name=outputs/model.txt").streaming_content) == b"weights"
    )


def test_unknown_run_is_404(api):
    assert api.get("/api/runs/nope/").status_code == 404


def test_details_leave_out_the_end_time_while_running(api, run_id):
    details = api.get(f"/api/runs/{run_id}/").json()
    assert details["end_time_utc"] is None and details["submitted_by"] == "alice"
    assert not math.isnan(details["duration_seconds"])


def test_the_fast_run_forms_match_the_run_serializer(api, run_id):
    """Lists and create_children render runs in one pass; they must equal RunSerializer."""
    from runs.api.serializers import RunSerializer, run_summary
    from runs.selectors import with_labels

    created = api.post(
        f"/api/runs/{run_id}/children/", {"tag_key": "fruit", "tag_values": ["Apple"]}, format="json"
    ).json()["results"][0]
    api.post(f"/api/runs/{run_id}/properties/", {"author": "me"}, format="json")
    api.patch(f"/api/runs/{run_id}/tags/", {"t": None}, format="json")
    api.post(f"/api/runs/{run_id}/fail/", {"error_details": "boom"}, format="json")

    def without_duration(data):
        return {k: v for k, v in dict(data).items() if k != "duration_seconds"}

    child = with_labels(Run.objects.filter(run_id=created["run_id"])).get()
    assert without_duration(created) == without_duration(RunSerializer(child).data)
    for run in with_labels(Run.objects.all()):  # a running run's duration ticks between the two calls
        assert without_duration(run_summary(run)) == without_duration(RunSerializer(run).data)


@pytest.mark.parametrize(
    "path, method, body, limit",
    [
        ("tags/", "patch", {"k" * 256: "v"}, "limit is 255"),
        ("tags/", "patch", {"ok": "v" * 4097}, "limit is 4096"),
        ("tags/", "patch", {"": "v"}, "must not be empty"),
        ("tags/", "patch", {"a\x00b": "v"}, "control characters"),
        ("tags/", "patch", {"fine": "v", "bad": {"nested": 1}}, "must be a string or null"),
        ("properties/", "post", {"p" * 256: "v"}, "limit is 255"),
        ("properties/", "post", {"ok": "v" * 4097}, "limit is 4096"),
        ("", "patch", {"display_name": "n" * 256}, "limit is 255"),
        ("", "patch", {"description": "d" * 5001}, "limit is 5000"),
    ],
)
def test_values_past_the_documented_limits_are_400_naming_the_limit(api, run_id, path, method, body, limit):
    response = getattr(api, method)(f"/api/runs/{run_id}/{path}", body, format="json")
    assert response.status_code == 400, response.content
    assert limit in response.json()["detail"]
    run = api.get(f"/api/runs/{run_id}/").json()
    assert run["tags"] == {} and run["properties"] == {} and run["display_name"] == ""


def test_a_tag_batch_with_one_bad_pair_writes_none_of_it(api, run_id):
    response = api.patch(f"/api/runs/{run_id}/tags/", {"good": "1", "x" * 300: "2"}, format="json")
    assert response.status_code == 400
    assert api.get(f"/api/runs/{run_id}/tags/").json() == {}


def test_a_bad_run_id_for_start_logging_is_refused(api, experiment):
    response = api.post(f"{experiment}/runs/", {"run_id": "../x"}, format="json")
    assert response.status_code == 400 and "run_id" in response.json()["detail"]
    taken = api.post(f"{experiment}/runs/", {"run_id": "mine-1"}, format="json")
    again = api.post(f"{experiment}/runs/", {"run_id": "mine-1"}, format="json")
    assert taken.status_code == 201 and again.status_code == 409
