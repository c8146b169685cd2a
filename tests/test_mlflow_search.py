"""MLflow's search syntax: the parser alone, then what the database returns for each kind of clause."""

from __future__ import annotations

import json
import time

import pytest
from django.test import Client

from runs.mlflow import search
from runs.mlflow.errors import MlflowError
from runs.mlflow.search import ATTRIBUTE, METRIC, PARAM, TAG, Clause, OrderBy

M = "/api/2.0/mlflow"

# --- the parser --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "clauses"),
    [
        ("metrics.acc > 0.5", [Clause(METRIC, "acc", ">", 0.5)]),
        ("metric.acc>=-1e3", [Clause(METRIC, "acc", ">=", -1000.0)]),
        ("params.lr = '0.1'", [Clause(PARAM, "lr", "=", "0.1")]),
        ('param.lr != "0.1"', [Clause(PARAM, "lr", "!=", "0.1")]),
        ("parameter.`a b` = 'x'", [Clause(PARAM, "a b", "=", "x")]),
        ("tags.\"my.tag\" LIKE '%x%'", [Clause(TAG, "my.tag", "LIKE", "%x%")]),
        ("tag.t ilike 'X'", [Clause(TAG, "t", "ILIKE", "X")]),
        ("tags.t IS NULL", [Clause(TAG, "t", "IS NULL", None)]),
        ("tags.t is not null", [Clause(TAG, "t", "IS NOT NULL", None)]),
        ("tags.mlflow.parentRunId = 'abc'", [Clause(TAG, "mlflow.parentRunId", "=", "abc")]),
        ("metrics.val/loss < 2", [Clause(METRIC, "val/loss", "<", 2.0)]),
        ("attributes.status = 'FINISHED'", [Clause(ATTRIBUTE, "status", "=", "FINISHED")]),
        ("attr.run_id IN ('a', 'b')", [Clause(ATTRIBUTE, "run_id", "IN", ("a", "b"))]),
        ("run.run_id NOT IN ('a')", [Clause(ATTRIBUTE, "run_id", "NOT IN", ("a",))]),
        ("status != 'RUNNING'", [Clause(ATTRIBUTE, "status", "!=", "RUNNING")]),
        ("created > 1700000000000", [Clause(ATTRIBUTE, "start_time", ">", 1700000000000)]),
        ("\"run name\" = 'x'", [Clause(ATTRIBUTE, "run_name", "=", "x")]),
        (
            "metrics.a > 1 AND params.b = 'c' and tags.d = 'e'",
            [Clause(METRIC, "a", ">", 1.0), Clause(PARAM, "b", "=", "c"), Clause(TAG, "d", "=", "e")],
        ),
        ("   ", []),
    ],
)
def test_filters_parse_as_mlflow_parses_them(text, clauses):
    assert search.parse_run_filter(text) == clauses


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("metrics.acc > 'x'", "Expected numeric value type for metric. Found 'x'"),
        ("params.lr > '1'", "Invalid comparator '>'"),
        ("foo.bar = 'x'", "Invalid entity type 'foo'"),
        ("bogus = 'x'", "Invalid attribute key 'bogus'"),
        ("metrics.a > 1 OR metrics.b > 2", "Invalid clause(s) in filter string: 'OR'"),
        ("status = FINISHED", "Parameter value is either not quoted"),
        ("params.p = 1", "Expected a quoted string value for parameter"),
        ("metrics.a IS NULL", "only supported for tags and params"),
        ("run_name IN ('a')", "Only ['run_id'] attributes support comparison with a list"),
        ("attributes.run_id IN ('a', 1)", "expected string value"),
        ("tags.a = 'x' AND", "Invalid clause(s)"),
        ("tags.a", "Could not be parsed"),
        ("start_time > 'yesterday'", "Expected numeric value type for numeric attribute: start_time"),
    ],
)
def test_filters_mlflow_refuses_are_refused_in_its_words(text, words):
    with pytest.raises(MlflowError) as err:
        search.parse_run_filter(text)
    assert words in err.value.message and err.value.error_code == "INVALID_PARAMETER_VALUE"


def test_order_by_clauses():
    assert search.parse_run_order_by(["metrics.acc DESC", "params.lr", "start_time asc", "tags.`a b`"]) == [
        OrderBy(METRIC, "acc", False),
        OrderBy(PARAM, "lr", True),
        OrderBy(ATTRIBUTE, "start_time", True),
        OrderBy(TAG, "a b", True),
    ]
    for bad in (["metrics.acc sideways"], ["nothing.x"], [""], ["datasets.name"], ["metrics.a", "metrics.a"]):
        with pytest.raises(MlflowError):
            search.parse_run_order_by(bad)


def test_experiment_filters_take_attributes_and_tags_only():
    assert search.parse_experiment_filter("name LIKE 'a%' and tags.k = 'v'") == [
        Clause(ATTRIBUTE, "name", "LIKE", "a%"),
        Clause(TAG, "k", "=", "v"),
    ]
    with pytest.raises(MlflowError):
        search.parse_experiment_filter("metrics.x > 1")


# --- in the database -------------------------------------------------------------------------------------------------


def _post(client: Client, path: str, body: dict) -> dict:
    response = client.post(f"{M}/{path}", json.dumps(body), content_type="application/json")
    assert response.status_code == 200, response.content
    return response.json()


@pytest.fixture
def ml(alice_key) -> Client:
    return Client(HTTP_AUTHORIZATION=f"Bearer {alice_key}")


@pytest.fixture
def world(ml, db):
    """An experiment with five runs: names, tags, params and metrics chosen to tell clauses apart."""
    exp = _post(ml, "experiments/create", {"name": "searching"})["experiment_id"]
    specs = {
        "alpha": ({"kind": "a*b?[c]", "team": "risk"}, {"lr": "0.1"}, {"acc": 0.9, "loss": 0.2}),
        "beta": ({"kind": "axb", "team": "risk"}, {"lr": "0.01"}, {"acc": 0.5}),
        "gamma": ({"kind": "A*B", "team": "ads"}, {"lr": "0.1"}, {"loss": 0.7}),
        "delta": ({"team": "Risk"}, {}, {"acc": 0.7}),
    }
    ids = {}
    for name, (tags, params, metrics) in specs.items():
        run = _post(
            ml,
            "runs/create",
            {"experiment_id": exp, "run_name": name, "tags": [{"key": k, "value": v} for k, v in tags.items()]},
        )
        ids[name] = run["run"]["info"]["run_id"]
        _post(
            ml,
            "runs/log-batch",
            {
                "run_id": ids[name],
                "params": [{"key": k, "value": v} for k, v in params.items()],
                "metrics": [{"key": k, "value": v, "timestamp": 1, "step": 0} for k, v in metrics.items()],
            },
        )
    child = _post(
        ml,
        "runs/create",
        {"experiment_id": exp, "run_name": "child", "tags": [{"key": "mlflow.parentRunId", "value": ids["alpha"]}]},
    )
    ids["child"] = child["run"]["info"]["run_id"]
    _post(ml, "runs/update", {"run_id": ids["beta"], "status": "FINISHED"})
    _post(ml, "runs/update", {"run_id": ids["delta"], "status": "KILLED"})
    return exp, ids


def _names(ml: Client, exp: str, text: str = "", **extra) -> list[str]:
    runs = _post(ml, "runs/search", {"experiment_ids": [exp], "filter": text, **extra})["runs"]
    return [r["info"]["run_name"] for r in runs]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("tags.kind LIKE 'a*b%'", ["alpha"]),  # '*', '?' and '[' are literal characters
        ("tags.kind LIKE 'a_b'", ["beta"]),  # '_' is one character
        ("tags.kind LIKE 'a%'", ["alpha", "beta"]),  # and LIKE is case-sensitive
        ("tags.kind ILIKE 'a%'", ["alpha", "beta", "gamma"]),
        ("tags.team = 'risk'", ["alpha", "beta"]),
        ("tags.team != 'risk'", ["delta", "gamma"]),
        ("tags.kind IS NULL", ["child", "delta"]),
        ("params.lr = '0.1' and metrics.loss < 0.5", ["alpha"]),
        ("params.lr IS NOT NULL", ["alpha", "beta", "gamma"]),
        ("metrics.acc != 0.5", ["alpha", "delta"]),
        ("metrics.acc <= 0.7", ["beta", "delta"]),
        ("attributes.status = 'FINISHED'", ["beta"]),
        ("attributes.status LIKE '%ING'", ["alpha", "child", "gamma"]),
        ("attributes.status != 'RUNNING'", ["beta", "delta"]),
        ("run_name ILIKE '%TA'", ["beta", "delta"]),
        ("tags.mlflow.runName = 'gamma'", ["gamma"]),
        ("tags.mlflow.parentRunId IS NULL and tags.team = 'ads'", ["gamma"]),
        ("user_id = 'alice' and run_name = 'child'", ["child"]),
        ("datasets.name = 'train'", []),
        ("end_time > 0", ["beta", "delta"]),
    ],
)
def test_each_kind_of_clause_selects_the_right_runs(ml, world, text, expected):
    exp, _ids = world
    assert sorted(_names(ml, exp, text)) == expected


def test_parent_run_id_ids_and_times(ml, world):
    exp, ids = world
    assert _names(ml, exp, f"tags.mlflow.parentRunId = '{ids['alpha']}'") == ["child"]
    assert sorted(_names(ml, exp, f"attributes.run_id IN ('{ids['beta']}', '{ids['gamma']}')")) == ["beta", "gamma"]
    assert len(_names(ml, exp, f"attributes.run_id NOT IN ('{ids['beta']}')")) == 4
    assert _names(ml, exp, f"artifact_uri LIKE '%{ids['gamma']}%'") == ["gamma"]
    started = _post(ml, "runs/get", {"run_id": ids["gamma"]})["run"]["info"]["start_time"]
    assert "gamma" in _names(ml, exp, f"start_time = {started}")
    assert "gamma" not in _names(ml, exp, f"start_time > {started}")
    assert _names(ml, exp, f"created > {int(time.time() * 1000) + 60_000}") == []


def test_order_by_puts_missing_values_last_either_way(ml, world):
    exp, _ids = world
    assert _names(ml, exp, "", order_by=["metrics.acc DESC"])[:3] == ["alpha", "delta", "beta"]
    assert _names(ml, exp, "", order_by=["metrics.acc ASC"])[:3] == ["beta", "delta", "alpha"]
    assert _names(ml, exp, "", order_by=["params.lr DESC", "attributes.run_name"])[:3] == ["alpha", "gamma", "beta"]
    assert _names(ml, exp, "", order_by=["tags.team"])[-1] == "child"
    by_status = _names(ml, exp, "", order_by=["attributes.status", "run_name"])
    assert by_status == ["beta", "delta", "alpha", "child", "gamma"]  # FINISHED, KILLED, RUNNING...


def test_pages_follow_tokens_to_the_end(ml, world):
    exp, _ids = world
    seen, token = [], None
    while True:
        body = {"experiment_ids": [exp], "max_results": 2, "order_by": ["run_name"]}
        if token:
            body["page_token"] = token
        page = _post(ml, "runs/search", body)
        seen += [r["info"]["run_name"] for r in page["runs"]]
        token = page.get("next_page_token")
        if not token:
            break
    assert seen == ["alpha", "beta", "child", "delta", "gamma"]


def test_deleted_runs_by_view_type_and_lifecycle_stage(ml, world):
    exp, ids = world
    _post(ml, "runs/delete", {"run_id": ids["gamma"]})
    assert "gamma" not in _names(ml, exp)
    assert _names(ml, exp, "", run_view_type="DELETED_ONLY") == ["gamma"]
    assert _names(ml, exp, "attributes.lifecycle_stage = 'deleted'", run_view_type="ALL") == ["gamma"]
    assert len(_names(ml, exp, "", run_view_type="ALL")) == 5


def test_search_experiments_filters_orders_and_pages(ml, db):
    for name in ("exp-b", "exp-a", "other"):
        _post(ml, "experiments/create", {"name": name})
    _post(
        ml,
        "experiments/set-experiment-tag",
        {
            "experiment_id": _post(ml, "experiments/get-by-name", {"experiment_name": "other"})["experiment"][
                "experiment_id"
            ],
            "key": "mlflow.note.content",
            "value": "notes",
        },
    )

    def names(**body):
        return [e["name"] for e in _post(ml, "experiments/search", body)["experiments"]]

    assert names(filter="name LIKE 'exp-%'", order_by=["name"]) == ["exp-a", "exp-b"]
    assert names(filter="tags.mlflow.note.content = 'notes'") == ["other"]
    assert names(filter="tags.team = 'x'") == []
    first = _post(ml, "experiments/search", {"max_results": 2, "order_by": ["name DESC"]})
    assert [e["name"] for e in first["experiments"]] == ["other", "exp-b"]
    rest = _post(
        ml, "experiments/search", {"max_results": 2, "order_by": ["name DESC"], "page_token": first["next_page_token"]}
    )
    assert [e["name"] for e in rest["experiments"]] == ["exp-a"]
