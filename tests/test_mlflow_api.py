"""The MLflow API over plain HTTP: MLflow's error format and codes, auth, permissions, bad input.

The client-level tests (test_mlflow_client.py) show the official client's
behaviour; these pin down the wire: status codes, error_code values, and that
no malformed request ever gets a 500 (which the client would retry for minutes).
"""

from __future__ import annotations

import base64
import json

import orjson
import pytest
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runs.models import Run
from runs.tokens import hash_key, new_run_key

pytestmark = pytest.mark.django_db

M = "/api/2.0/mlflow"


def mlflow_client(key: str | None = None, **headers) -> Client:
    if key:
        headers["HTTP_AUTHORIZATION"] = f"Bearer {key}"
    return Client(**headers)


def post(client: Client, path: str, body: object):
    # The standard library also writes integers past 64 bits, which a hand-made request may hold.
    data = body if isinstance(body, bytes) else json.dumps(body)
    return client.post(path, data, content_type="application/json")


def error(response, status: int, code: str) -> str:
    assert response.status_code == status, response.content
    body = response.json()
    assert body["error_code"] == code, body
    return body["message"]


@pytest.fixture
def alice_ml(alice_key) -> Client:
    return mlflow_client(alice_key)


@pytest.fixture
def bob_ml(bob_key) -> Client:
    return mlflow_client(bob_key)


@pytest.fixture
def run_id(alice_ml) -> str:
    response = post(alice_ml, f"{M}/runs/create", {"experiment_id": "0", "run_name": "r"})
    assert response.status_code == 200, response.content
    return response.json()["run"]["info"]["run_id"]


# --- auth ------------------------------------------------------------------------------------------------------


def test_requests_without_credentials_get_mlflows_401(alice):
    response = Client().get(f"{M}/experiments/get", {"experiment_id": "0"})
    assert "MLFLOW_TRACKING_TOKEN" in error(response, 401, "UNAUTHENTICATED")
    assert response["WWW-Authenticate"].startswith("Basic")


@pytest.mark.parametrize(
    "header",
    [
        "Bearer rs_not-a-real-token",
        "Basic " + base64.b64encode(b"alice:rs_wrong").decode(),
        "Basic %%%not-base64",
        "Basic " + base64.b64encode(b"no-colon").decode(),
    ],
)
def test_bad_credentials_are_401_not_500(alice, header):
    error(Client(HTTP_AUTHORIZATION=header).get(f"{M}/experiments/get", {"experiment_id": "0"}), 401, "UNAUTHENTICATED")


def test_bearer_token_and_basic_auth_both_identify_the_user(alice, alice_key):
    basic = "Basic " + base64.b64encode(f"anything:{alice_key}".encode()).decode()
    for header in (f"Bearer {alice_key}", f"Token {alice_key}", basic):
        response = Client(HTTP_AUTHORIZATION=header).get(f"{M}/experiments/get", {"experiment_id": "0"})
        assert response.status_code == 200 and response.json()["experiment"]["name"] == "Default"


def test_a_signed_in_studio_session_may_read_but_not_write(alice, run_id):
    browser = Client()
    browser.force_login(alice)
    assert browser.get(f"{M}/runs/get", {"run_id": run_id}).status_code == 200
    error(post(browser, f"{M}/runs/create", {"experiment_id": "0"}), 401, "UNAUTHENTICATED")


def test_server_info_needs_no_credentials_and_enables_workspaces(db):
    response = Client().get("/api/3.0/mlflow/server-info")
    assert response.status_code == 200 and response.json()["workspaces_enabled"] is True
    assert Client().get("/w/team-a/api/3.0/mlflow/server-info").status_code == 200


# --- permissions ----------------------------------------------------------------------------------------------------


def test_another_workspaces_user_finds_nothing_of_alices(alice_ml, bob_ml, run_id):
    exp_id = post(alice_ml, f"{M}/experiments/create", {"name": "secret"}).json()["experiment_id"]
    put = bob_ml.generic(
        "PUT", f"/api/2.0/mlflow-artifacts/artifacts/0/{run_id}/artifacts/x.txt", b"x", "application/octet-stream"
    )
    error(put, 404, "RESOURCE_DOES_NOT_EXIST")
    error(bob_ml.get(f"{M}/runs/get", {"run_id": run_id}), 404, "RESOURCE_DOES_NOT_EXIST")
    error(bob_ml.get(f"{M}/experiments/get", {"experiment_id": exp_id}), 404, "RESOURCE_DOES_NOT_EXIST")
    error(bob_ml.get(f"{M}/artifacts/list", {"run_id": run_id}), 404, "RESOURCE_DOES_NOT_EXIST")
    error(bob_ml.get(f"{M}/metrics/get-history", {"run_id": run_id, "metric_key": "m"}), 404, "RESOURCE_DOES_NOT_EXIST")
    error(
        post(bob_ml, f"{M}/runs/log-batch", {"run_id": run_id, "tags": [{"key": "k", "value": "v"}]}),
        404,
        "RESOURCE_DOES_NOT_EXIST",
    )
    error(
        bob_ml.get(f"/w/team-a{M}/experiments/get-by-name", {"experiment_name": "secret"}),
        404,
        "RESOURCE_DOES_NOT_EXIST",
    )
    assert post(bob_ml, f"{M}/runs/search", {"experiment_ids": [exp_id]}).json() == {"runs": []}
    assert Run.objects.get(run_id=run_id).tag_set.count() == 0


def test_a_run_token_writes_to_its_own_run_and_children_only(alice, alice_ml, run_id):
    other = post(alice_ml, f"{M}/runs/create", {"experiment_id": "0"}).json()["run"]["info"]["run_id"]
    key = new_run_key()
    Run.objects.filter(run_id=run_id).update(token_hash=hash_key(key))
    runner = mlflow_client(key)
    ok = post(runner, f"{M}/runs/log-metric", {"run_id": run_id, "key": "m", "value": 1, "timestamp": 1})
    assert ok.status_code == 200
    exp_id = str(Run.objects.get(run_id=run_id).experiment_id)
    child = post(
        runner,
        f"{M}/runs/create",
        {"experiment_id": exp_id, "tags": [{"key": "mlflow.parentRunId", "value": run_id}]},
    )
    assert child.json()["run"]["data"]["tags"][-1] == {"key": "mlflow.parentRunId", "value": run_id}
    error(post(runner, f"{M}/runs/create", {"experiment_id": exp_id}), 403, "PERMISSION_DENIED")
    error(
        post(runner, f"{M}/runs/set-tag", {"run_id": other, "key": "k", "value": "v"}), 404, "RESOURCE_DOES_NOT_EXIST"
    )


def test_deleted_runs_are_read_only_and_hidden_from_the_studio_lists(alice_ml, api, run_id):
    assert post(alice_ml, f"{M}/runs/delete", {"run_id": run_id}).status_code == 200
    info = alice_ml.get(f"{M}/runs/get", {"run_id": run_id}).json()["run"]["info"]
    assert info["lifecycle_stage"] == "deleted"
    message = error(
        post(alice_ml, f"{M}/runs/set-tag", {"run_id": run_id, "key": "k", "value": "v"}),
        400,
        "INVALID_PARAMETER_VALUE",
    )
    assert message == f"The run {run_id} must be in the 'active' state. Current state is deleted."
    assert api.get(f"/api/runs/{run_id}/").status_code == 404
    assert post(alice_ml, f"{M}/runs/restore", {"run_id": run_id}).status_code == 200
    assert api.get(f"/api/runs/{run_id}/").status_code == 200


# --- bad input -----------------------------------------------------------------------------------------------------

BAD_REQUESTS = [
    # (path, body, status, code, words in the message)
    ("runs/create", {"experiment_id": "abc"}, 400, "INVALID_PARAMETER_VALUE", "must be a valid integer"),
    ("runs/create", {"experiment_id": "987654"}, 404, "RESOURCE_DOES_NOT_EXIST", "No Experiment with id=987654"),
    (
        "runs/create",
        {"experiment_id": "0", "run_name": "a", "tags": [{"key": "mlflow.runName", "value": "b"}]},
        400,
        "INVALID_PARAMETER_VALUE",
        "Both 'run_name' argument and 'mlflow.runName' tag",
    ),
    (
        "runs/create",
        {"experiment_id": "0", "tags": [{"key": "mlflow.parentRunId", "value": "nope"}]},
        404,
        "RESOURCE_DOES_NOT_EXIST",
        "Run with id=nope not found",
    ),
    (
        "runs/log-metric",
        {"key": "m", "value": 1, "timestamp": 1},
        400,
        "INVALID_PARAMETER_VALUE",
        "Missing value for required parameter 'run_id'",
    ),
    (
        "runs/log-metric",
        {"run_id": "{run}", "key": "m", "value": "abc", "timestamp": 1},
        400,
        "INVALID_PARAMETER_VALUE",
        "Please specify value as a valid double",
    ),
    (
        "runs/log-metric",
        {"run_id": "{run}", "key": "a*b", "value": 1, "timestamp": 1},
        400,
        "INVALID_PARAMETER_VALUE",
        "Names may only contain alphanumerics",
    ),
    (
        "runs/log-metric",
        {"run_id": "{run}", "key": "../up", "value": 1, "timestamp": 1},
        400,
        "INVALID_PARAMETER_VALUE",
        "must not resolve to other names",
    ),
    (
        "runs/log-metric",
        {"run_id": "{run}", "key": "m", "value": 1, "timestamp": -5},
        400,
        "INVALID_PARAMETER_VALUE",
        "Timestamp must be a nonnegative long",
    ),
    (
        "runs/log-metric",
        {"run_id": "{run}", "key": "m", "value": 1, "timestamp": 1, "step": 1.5},
        400,
        "INVALID_PARAMETER_VALUE",
        "Step must be a valid long",
    ),
    (
        "runs/log-metric",
        {"run_id": 12, "key": "m", "value": 1, "timestamp": 1},
        400,
        "INVALID_PARAMETER_VALUE",
        "Value was of type 'int'",
    ),
    (
        "runs/log-metric",
        {"run_id": "missing-run", "key": "m", "value": 1, "timestamp": 1},
        404,
        "RESOURCE_DOES_NOT_EXIST",
        "Run with id=missing-run not found",
    ),
    (
        "runs/log-parameter",
        {"run_id": "{run}", "key": "p", "value": "v" * 5000},
        400,
        "INVALID_PARAMETER_VALUE",
        "'Param value' exceeds the maximum length of 4096 characters",
    ),
    (
        "runs/set-tag",
        {"run_id": "{run}", "key": "k" * 251, "value": "v"},
        400,
        "INVALID_PARAMETER_VALUE",
        "exceeds the maximum length of 250 characters",
    ),
    (
        "runs/set-tag",
        {"run_id": "{run}", "key": "mlflow.parentRunId", "value": "x"},
        400,
        "INVALID_PARAMETER_VALUE",
        "can only be set when a run is created",
    ),
    ("runs/update", {"run_id": "{run}", "status": "DONE"}, 400, "INVALID_PARAMETER_VALUE", "RUNNING, SCHEDULED"),
    ("runs/update", {"run_id": "{run}", "status": "SCHEDULED"}, 400, "INVALID_PARAMETER_VALUE", "cannot become"),
    ("runs/delete-tag", {"run_id": "{run}", "key": "absent"}, 404, "RESOURCE_DOES_NOT_EXIST", "No tag with name"),
    (
        "runs/log-batch",
        {"run_id": "{run}", "metrics": {"key": "m"}},
        400,
        "INVALID_PARAMETER_VALUE",
        "parameter 'metrics'",
    ),
    (
        "runs/log-batch",
        {"run_id": "{run}", "metrics": [{"key": "m", "timestamp": 1}]},
        400,
        "INVALID_PARAMETER_VALUE",
        "Missing value for required parameter 'metrics[0].value'",
    ),
    (
        "runs/log-batch",
        {"run_id": "{run}", "params": [{"key": "p", "value": "1"}, {"key": "p", "value": "1"}]},
        400,
        "INVALID_PARAMETER_VALUE",
        "Duplicate parameter keys have been submitted: ['p']",
    ),
    (
        "runs/search",
        {"experiment_ids": ["0"], "filter": "metrics.acc > 'x'"},
        400,
        "INVALID_PARAMETER_VALUE",
        "Expected numeric value type for metric",
    ),
    (
        "runs/search",
        {"experiment_ids": ["0"], "filter": "metrics.a > 1 OR metrics.b > 2"},
        400,
        "INVALID_PARAMETER_VALUE",
        "Invalid clause(s) in filter string: 'OR'",
    ),
    (
        "runs/search",
        {"experiment_ids": ["0"], "order_by": ["bogus.x"]},
        400,
        "INVALID_PARAMETER_VALUE",
        "Invalid entity type 'bogus'",
    ),
    (
        "runs/search",
        {"experiment_ids": ["0"], "order_by": ["metrics.a", "metrics.a DESC"]},
        400,
        "INVALID_PARAMETER_VALUE",
        "duplicate fields",
    ),
    (
        "runs/search",
        {"experiment_ids": ["0"], "page_token": "@@@"},
        400,
        "INVALID_PARAMETER_VALUE",
        "Invalid page token",
    ),
    ("runs/search", {"experiment_ids": ["0"], "max_results": 50001}, 400, "INVALID_PARAMETER_VALUE", "at most 50000"),
    ("runs/search", {"experiment_ids": ["zero"]}, 400, "INVALID_PARAMETER_VALUE", "Invalid experiment ID 'zero'"),
    ("experiments/create", {"name": "has spaces!"}, 400, "INVALID_PARAMETER_VALUE", "experiment name must be"),
    (
        "experiments/create",
        {"name": "x", "artifact_location": "s3://b"},
        400,
        "INVALID_PARAMETER_VALUE",
        "artifact_location cannot be set",
    ),
    (
        "experiments/create",
        {"name": "x", "tags": [{"key": "team", "value": "a"}]},
        400,
        "INVALID_PARAMETER_VALUE",
        "cannot be stored",
    ),
    ("experiments/create", {}, 400, "INVALID_PARAMETER_VALUE", "Missing value for required parameter 'name'"),
    ("experiments/delete", {"experiment_id": "0"}, 400, "INVALID_PARAMETER_VALUE", "Cannot delete the default"),
    (
        "experiments/update",
        {"experiment_id": "0", "new_name": "other"},
        400,
        "INVALID_PARAMETER_VALUE",
        "cannot be renamed",
    ),
    ("experiments/search", {"view_type": "SOME"}, 400, "INVALID_PARAMETER_VALUE", "ACTIVE_ONLY"),
    ("experiments/search", {"filter": "params.x = 'a'"}, 400, "INVALID_PARAMETER_VALUE", "Invalid entity type"),
]


@pytest.mark.parametrize(("path", "body", "status", "code", "words"), BAD_REQUESTS)
def test_bad_requests_get_mlflows_error_codes(alice_ml, run_id, path, body, status, code, words):
    body = orjson.loads(orjson.dumps(body).replace(b"{run}", run_id.encode()))
    assert words in error(post(alice_ml, f"{M}/{path}", body), status, code)


@pytest.mark.parametrize(
    ("query", "words"),
    [
        ({"run_id": "{run}"}, "Missing value for required parameter 'metric_key'"),
        ({"run_id": "{run}", "metric_key": "m", "max_results": "0"}, "must be a positive integer"),
        ({"run_id": "{run}", "metric_key": "m", "max_results": "many"}, "parameter 'max_results'"),
    ],
)
def test_bad_history_queries(alice_ml, run_id, query, words):
    query = {k: v.replace("{run}", run_id) for k, v in query.items()}
    assert words in error(alice_ml.get(f"{M}/metrics/get-history", query), 400, "INVALID_PARAMETER_VALUE")


def test_bad_bulk_interval_queries(alice_ml, run_id):
    path = f"{M}/metrics/get-history-bulk-interval"
    assert "run_ids" in error(alice_ml.get(path, {"metric_key": "m"}), 400, "INVALID_PARAMETER_VALUE")
    both = error(
        alice_ml.get(path, {"run_ids": run_id, "metric_key": "m", "start_step": "1"}), 400, "INVALID_PARAMETER_VALUE"
    )
    assert "both must be specified" in both
    many = {"run_ids": [f"r{i}" for i in range(101)], "metric_key": "m"}
    assert "at most 100 run_ids" in error(alice_ml.get(path, many), 400, "INVALID_PARAMETER_VALUE")


def test_malformed_bodies_and_unknown_endpoints(alice_ml):
    error(post(alice_ml, f"{M}/runs/create", b"{not json"), 400, "BAD_REQUEST")
    error(post(alice_ml, f"{M}/runs/create", b"[1, 2]"), 400, "BAD_REQUEST")
    error(alice_ml.get(f"{M}/no/such/thing"), 404, "ENDPOINT_NOT_FOUND")
    error(alice_ml.get("/api/2.0/mlflow-artifacts/elsewhere"), 404, "ENDPOINT_NOT_FOUND")
    wrong_method = alice_ml.get(f"{M}/runs/create")
    assert wrong_method.status_code == 405 and wrong_method.json()["error_code"] == "BAD_REQUEST"


def test_artifact_paths_outside_a_run_are_refused(alice_ml, run_id):
    base = "/api/2.0/mlflow-artifacts/artifacts"
    error(alice_ml.generic("PUT", f"{base}/0/{run_id}/x.txt", b"x"), 404, "RESOURCE_DOES_NOT_EXIST")
    error(alice_ml.generic("PUT", f"{base}/0/{run_id}/artifacts/../../x", b"x"), 400, "INVALID_PARAMETER_VALUE")
    error(alice_ml.get(f"{base}/0/{run_id}/artifacts/missing.txt"), 404, "RESOURCE_DOES_NOT_EXIST")
    assert alice_ml.get(base, {"path": "0"}).json() == {"files": []}
    assert alice_ml.generic("PUT", f"{base}/0/{run_id}/artifacts/a/b.txt", b"hello").status_code == 200
    again = alice_ml.generic("PUT", f"{base}/0/{run_id}/artifacts/a/b.txt", b"hello")
    assert "write-once" in error(again, 400, "RESOURCE_ALREADY_EXISTS")
    assert alice_ml.get(base, {"path": f"0/{run_id}/artifacts"}).json() == {"files": [{"path": "a", "is_dir": True}]}
    listed = alice_ml.get(f"{M}/artifacts/list", {"run_id": run_id, "path": "a"}).json()
    assert listed["files"] == [{"path": "a/b.txt", "is_dir": False, "file_size": 5}]
    download = alice_ml.get(f"{base}/0/{run_id}/artifacts/a/b.txt")
    assert b"".join(download.streaming_content) == b"hello"


def test_a_metric_name_used_by_the_sdk_for_a_table_is_a_conflict(alice_ml, api, run_id):
    table = {"batch_id": "t1", "series": [{"name": "tbl", "kind": "table", "values": [{"a": [1]}], "times": [1.0]}]}
    assert api.post(f"/api/runs/{run_id}/metrics/", table, format="json").status_code == 200
    body = {"run_id": run_id, "key": "tbl", "value": 1, "timestamp": 1}
    assert "table metric" in error(post(alice_ml, f"{M}/runs/log-metric", body), 409, "RESOURCE_CONFLICT")
    history = alice_ml.get(f"{M}/metrics/get-history", {"run_id": run_id, "metric_key": "tbl"}).json()
    assert history == {"metrics": []}


def test_a_repeated_log_metric_is_stored_once_as_mlflow_does(alice_ml, run_id):
    body = {"run_id": run_id, "key": "m", "value": 0.5, "timestamp": 1000, "step": 3}
    for _ in range(3):
        assert post(alice_ml, f"{M}/runs/log-metric", body).status_code == 200
    history = alice_ml.get(f"{M}/metrics/get-history", {"run_id": run_id, "metric_key": "m"}).json()["metrics"]
    assert history == [{"key": "m", "value": 0.5, "timestamp": 1000, "step": 3}]


# --- fuzzing: whatever arrives, the answer is MLflow's format and never a 500 --------------------------------------

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    path=st.sampled_from(
        [
            "runs/log-batch",
            "runs/log-metric",
            "runs/create",
            "runs/search",
            "runs/update",
            "experiments/search",
            "experiments/create",
            "runs/set-tag",
        ]
    ),
    body=st.dictionaries(
        st.sampled_from(
            [
                "run_id",
                "metrics",
                "params",
                "tags",
                "key",
                "value",
                "timestamp",
                "step",
                "filter",
                "order_by",
                "experiment_ids",
                "max_results",
                "page_token",
                "status",
                "name",
                "run_name",
                "experiment_id",
                "view_type",
            ]
        ),
        _json,
        max_size=6,
    ),
)
def test_fuzzed_requests_never_get_a_500(alice_ml, path, body):
    response = post(alice_ml, f"{M}/{path}", body)
    assert response.status_code < 500, response.content
    if response.status_code != 200:
        assert set(response.json()) == {"error_code", "message"}


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(alphabet="metricsparamtg.=<>!'\"`() ,%_aANDORLIKEISNUL0123456789-", max_size=40))
def test_fuzzed_filters_are_parsed_or_refused_never_crash(alice_ml, text):
    response = post(alice_ml, f"{M}/runs/search", {"experiment_ids": ["0"], "filter": text})
    assert response.status_code in (200, 400), response.content
