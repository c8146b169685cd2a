"""What schema fuzzing (tests/test_fuzz_api.py) found, each pinned by a focused test."""

from __future__ import annotations

import pytest
from drf_spectacular.generators import SchemaGenerator

from runs.models import Run, RunEvent
from runs.tokens import hash_key
from tests.conftest import token_client

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def openapi(django_db_blocker):
    with django_db_blocker.unblock():
        return SchemaGenerator().get_schema(request=None, public=True)


@pytest.fixture
def run_id(api):
    api.post("/api/workspaces/team-a/experiments/", {"name": "exp"}, format="json")
    return api.post("/api/workspaces/team-a/experiments/exp/runs/", {}, format="json").json()["run_id"]


def test_fail_refuses_an_error_code_that_is_not_text(api, run_id):
    response = api.post(f"/api/runs/{run_id}/fail/", {"error_code": 7088406}, format="json")
    assert response.status_code == 400 and "error_code must be a string" in response.json()["detail"]
    assert Run.objects.get(run_id=run_id).status == "Running"


def test_fail_refuses_an_error_code_in_the_details_that_is_not_text(api, run_id):
    response = api.post(f"/api/runs/{run_id}/fail/", {"error_details": {"message": "m", "code": 3}}, format="json")
    assert response.status_code == 400 and "error_details.code" in response.json()["detail"]
    assert not RunEvent.objects.filter(run__run_id=run_id, to_status="Failed").exists()


def test_fail_keeps_a_text_error_code(api, run_id):
    response = api.post(f"/api/runs/{run_id}/fail/", {"error_code": "DataError"}, format="json")
    assert response.status_code == 200 and response.json()["error"]["error"]["code"] == "DataError"


def test_fail_refuses_a_body_that_is_not_an_object(api, run_id):
    response = api.post(f"/api/runs/{run_id}/fail/", [], format="json")
    assert response.status_code == 400 and "JSON object" in response.json()["detail"]
    assert Run.objects.get(run_id=run_id).status == "Running"


def test_fail_with_no_body_still_fails_the_run(api, run_id):
    assert api.post(f"/api/runs/{run_id}/fail/").json()["status"] == "Failed"


def test_runner_started_refuses_a_body_that_is_not_an_object(api, run_id):
    key = "rt_fuzz-" + "x" * 30
    Run.objects.filter(run_id=run_id).update(token_hash=hash_key(key), run_type=Run.Type.SUBMITTED, status="Starting")
    runner = token_client(key)
    assert runner.post(f"/api/runs/{run_id}/runner/started/", [1], format="json").status_code == 400
    assert Run.objects.get(run_id=run_id).status == "Starting"
    assert runner.post(f"/api/runs/{run_id}/runner/started/", {"pid": 1}, format="json").json()["status"] == "Running"


def test_removing_an_empty_tag_key_is_a_no_op(api, run_id):
    api.patch(f"/api/runs/{run_id}/tags/", {"k": "v"}, format="json")
    response = api.post(f"/api/runs/{run_id}/tags/remove/", {"keys": [""]}, format="json")
    assert response.status_code == 200 and response.json() == {"k": "v"}


def test_an_empty_x_draws_by_step(api, run_id):
    api.post(
        f"/api/runs/{run_id}/metrics/",
        {"batch_id": "b", "series": [{"name": "loss", "values": [1.0, 2.0], "times": [1.0, 2.0]}]},
        format="json",
    )
    response = api.get(f"/api/runs/{run_id}/metrics/points/?name=loss&x=")
    assert response.status_code == 200 and response.json()["steps"] == [0, 1]


@pytest.mark.parametrize(
    "url, body",
    [
        ("/api/workspaces/team-a/experiments/", {"name": "exp2\n"}),
        ("/api/workspaces/team-a/experiments/exp/runs/", {"run_id": "abc\n"}),
        ("/api/workspaces/team-a/computes/", {"name": "gpu\n"}),
        ("/api/runs/{run_id}/metrics/", {"batch_id": "b\n", "series": [{"name": "x", "values": [1], "times": [1.0]}]}),
    ],
)
def test_a_name_with_a_trailing_newline_is_refused(api, run_id, url, body):
    """`re.match(r"^...$")` accepts "name\n": `$` also matches before a final newline."""
    before = (Run.objects.count(), RunEvent.objects.count())
    response = api.post(url.format(run_id=run_id), body, format="json")
    assert response.status_code == 400, response.content
    assert (Run.objects.count(), RunEvent.objects.count()) == before
    from runs.models import ComputeTarget, Experiment, MetricBatch

    assert not Experiment.objects.filter(name__endswith="\n").exists()
    assert not ComputeTarget.objects.filter(name__endswith="\n").exists()
    assert not MetricBatch.objects.exists()


def test_a_workspace_name_with_a_trailing_newline_is_refused(alice):
    from runs.errors import InvalidInput
    from runs.services import workspaces

    with pytest.raises(InvalidInput):
        workspaces.workspace_create("team-c\n", alice)


def test_an_mlflow_experiment_name_with_a_trailing_newline_is_refused(alice_key, client):
    response = client.post(
        "/api/2.0/mlflow/experiments/create",
        {"name": "exp\n"},
        content_type="application/json",
        headers={"Authorization": f"Bearer {alice_key}"},
    )
    assert response.status_code == 400, response.content


def test_names_ids_and_batch_ids_carry_their_patterns_in_the_schema(openapi):
    schemas = openapi["components"]["schemas"]
    assert schemas["ComputeTargetWriteRequest"]["properties"]["name"]["pattern"]
    assert schemas["RunCreateRequest"]["properties"]["run_id"]["pattern"]
    assert schemas["MetricBatchRequest"]["properties"]["batch_id"]["pattern"]


# --- the schema says what the API does ----------------------------------------------------------


def _schema_of(openapi, ref: str) -> dict:
    return openapi["components"]["schemas"][ref.rsplit("/", 1)[-1]]


def test_labels_are_optional_when_creating_runs_and_children(openapi):
    for name in ("RunCreateRequest", "SubmitRequest"):
        required = openapi["components"]["schemas"][name].get("required", [])
        assert "tags" not in required and "properties" not in required, name


def test_label_values_may_be_numbers_or_booleans_as_the_service_stores_them_as_text(api, run_id, openapi):
    value = openapi["components"]["schemas"]["RunCreateRequest"]["properties"]["tags"]["additionalProperties"]
    assert {s["type"] for s in value["oneOf"]} == {"string", "number", "boolean"} and value["nullable"]
    assert api.patch(f"/api/runs/{run_id}/tags/", {"n": 1, "b": True}, format="json").json() == {"n": "1", "b": "True"}


def test_children_list_does_not_offer_include_children(openapi):
    names = {p["name"] for p in openapi["paths"]["/api/runs/{run_id}/children/"]["get"]["parameters"]}
    assert "recursive" in names and "include_children" not in names


def test_file_content_is_documented_with_any_content_type(openapi):
    content = openapi["paths"]["/api/runs/{run_id}/files/content/"]["get"]["responses"]["200"]["content"]
    assert list(content) == ["*/*"]


def test_every_operation_documents_its_errors_in_one_shape(openapi):
    for path, operations in openapi["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            if path != "/api/health/":
                assert {"401", "403"} <= set(responses), f"{method} {path}"
            if "{" in path:
                assert "404" in responses, f"{method} {path}"
            if method in ("post", "patch", "delete"):
                assert {"400", "409", "413"} <= set(responses), f"{method} {path}"
            for code, response in responses.items():
                if code.startswith("4"):
                    assert response["content"]["application/json"]["schema"]["$ref"].endswith("/Error")


def test_optional_query_parameters_may_be_empty(openapi):
    for operations in openapi["paths"].values():
        for operation in operations.values():
            for parameter in operation.get("parameters", []):
                if parameter["in"] == "query" and not parameter.get("required"):
                    assert parameter["allowEmptyValue"] is True


def test_token_authentication_is_a_documented_security_scheme(openapi):
    scheme = openapi["components"]["securitySchemes"]["tokenAuth"]
    assert scheme == {**scheme, "type": "apiKey", "in": "header", "name": "Authorization"}
    assert {"tokenAuth": []} in openapi["paths"]["/api/me/"]["get"]["security"]


def test_events_by_the_system_have_a_null_actor_and_the_schema_says_so(api, run_id, openapi):
    key = "rt_fuzz-" + "y" * 30
    Run.objects.filter(run_id=run_id).update(token_hash=hash_key(key), run_type=Run.Type.SUBMITTED, status="Starting")
    token_client(key).post(f"/api/runs/{run_id}/runner/started/", {"pid": 1}, format="json")
    events = api.get(f"/api/runs/{run_id}/events/").json()
    assert events[-1]["to_status"] == "Running" and events[-1]["actor"] is None
    assert openapi["components"]["schemas"]["RunEvent"]["properties"]["actor"]["nullable"] is True


def test_a_runner_exit_report_must_say_its_exit_code(api, run_id):
    key = "rt_fuzz-" + "z" * 30
    Run.objects.filter(run_id=run_id).update(token_hash=hash_key(key), run_type=Run.Type.SUBMITTED)
    runner = token_client(key)
    response = runner.post(f"/api/runs/{run_id}/runner/exit/", {"reason": "r", "log_tail": "t"}, format="json")
    assert response.status_code == 400 and "exit_code is required" in response.json()["detail"]
    assert Run.objects.get(run_id=run_id).status == "Running"
    response = runner.post(f"/api/runs/{run_id}/runner/exit/", {"exit_code": None}, format="json")
    assert response.json()["status"] == "Failed"


def test_an_empty_error_code_means_user_error(api, run_id, openapi):
    response = api.post(f"/api/runs/{run_id}/fail/", {"error_code": ""}, format="json")
    assert response.json()["error"]["error"]["code"] == "UserError"
    assert openapi["components"]["schemas"]["FailRequest"]["properties"]["error_code"].get("minLength", 0) == 0


def test_runner_started_checks_the_pid_it_is_given(api, run_id, openapi):
    key = "rt_fuzz-" + "p" * 30
    Run.objects.filter(run_id=run_id).update(token_hash=hash_key(key), run_type=Run.Type.SUBMITTED, status="Starting")
    runner = token_client(key)
    response = runner.post(f"/api/runs/{run_id}/runner/started/", {"pid": "12"}, format="json")
    assert response.status_code == 400 and "pid" in response.json()["detail"]
    assert runner.post(f"/api/runs/{run_id}/runner/started/", {}, format="json").json()["status"] == "Running"
    assert "pid" not in openapi["components"]["schemas"]["RunnerStartedRequest"].get("required", [])


def test_script_arguments_may_be_empty_text_or_numbers(api, openapi):
    from tests.e2e import make_zip

    api.post("/api/workspaces/team-a/experiments/", {"name": "exp"}, format="json")
    sha = api.generic(
        "POST", "/api/workspaces/team-a/snapshots/", make_zip({"a.py": ""}), content_type="application/zip"
    ).json()["sha256"]
    body = {"snapshot": sha, "script": "a.py", "arguments": ["--name", "", "--lr", 0.1]}
    response = api.post("/api/workspaces/team-a/experiments/exp/submit/", body, format="json")
    assert response.status_code == 201
    assert response.json()["run_definition"]["arguments"] == ["--name", "", "--lr", "0.1"]
    item = openapi["components"]["schemas"]["SubmitRequest"]["properties"]["arguments"]["items"]
    assert {s["type"] for s in item["oneOf"]} == {"string", "number"}


@pytest.mark.parametrize(
    "report, field",
    [
        ({"exit_code": 1, "log_tail": 5}, "log_tail"),
        ({"exit_code": 1, "reason": []}, "reason"),
        ({"exit_code": 0, "timed_out": "no"}, "timed_out"),
    ],
)
def test_a_runner_exit_report_with_mistyped_fields_is_refused(api, run_id, report, field):
    key = "rt_fuzz-" + "e" * 30
    Run.objects.filter(run_id=run_id).update(token_hash=hash_key(key), run_type=Run.Type.SUBMITTED)
    response = token_client(key).post(f"/api/runs/{run_id}/runner/exit/", report, format="json")
    assert response.status_code == 400 and field in response.json()["detail"]
    assert Run.objects.get(run_id=run_id).status == "Running"


def test_a_null_description_clears_it_as_the_schema_says(api, run_id, openapi):
    api.patch(f"/api/runs/{run_id}/", {"description": "d"}, format="json")
    assert api.patch(f"/api/runs/{run_id}/", {"description": None}, format="json").json()["description"] == ""
    assert openapi["components"]["schemas"]["PatchedRunUpdateRequest"]["properties"]["description"]["nullable"]


# Soak fuzzing found run create and submit taking `"tags": null` though the schema called it an
# object: `data.get("tags") or {}` also took [], "" and 0 as "no tags". Now only null means none
# (and the schema says so); any other wrong type is a 400 naming the field.
def _snapshot(api) -> str:
    from tests.e2e import make_zip

    body = make_zip({"a.py": ""})
    return api.generic("POST", "/api/workspaces/team-a/snapshots/", body, content_type="application/zip").json()[
        "sha256"
    ]


@pytest.mark.parametrize("field", ["tags", "properties"])
def test_a_null_label_set_at_run_creation_means_none_and_a_wrong_type_is_refused(api, run_id, openapi, field):
    url = "/api/workspaces/team-a/experiments/exp/runs/"
    assert api.post(url, {field: None}, format="json").status_code == 201
    for wrong in ([], "", 0):
        response = api.post(url, {field: wrong}, format="json")
        assert response.status_code == 400 and field in response.json()["detail"], wrong
    assert openapi["components"]["schemas"]["RunCreateRequest"]["properties"][field]["nullable"]


@pytest.mark.parametrize(
    "field, wrong",
    [("tags", []), ("arguments", ""), ("environment_variables", 0), ("compute_target", "")],
)
def test_submit_takes_null_as_none_and_refuses_a_wrong_type(api, run_id, openapi, field, wrong):
    url = "/api/workspaces/team-a/experiments/exp/submit/"
    base = {"snapshot": _snapshot(api), "script": "a.py"}
    runs_before = Run.objects.count()
    response = api.post(url, {**base, field: wrong}, format="json")
    assert response.status_code in (400, 404) and field.split("_")[0] in response.json()["detail"]
    assert Run.objects.count() == runs_before
    assert api.post(url, {**base, field: None}, format="json").status_code == 201
    assert openapi["components"]["schemas"]["SubmitRequest"]["properties"][field]["nullable"]


def test_an_experiment_name_is_ascii_as_the_schema_pattern_says(api):
    # Soak fuzzing: Python's \w took "bÇO", which the documented (ECMA, ASCII) pattern refuses.
    response = api.post("/api/workspaces/team-a/experiments/", {"name": "bÇO"}, format="json")
    assert response.status_code == 400 and "name" in response.json()["detail"]
    assert api.post("/api/workspaces/team-a/experiments/", {"name": "b_C-0"}, format="json").status_code == 201
