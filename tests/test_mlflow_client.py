"""The official `mlflow` client against a live Run Studio (issue 7's acceptance 1-3).

Every test drives the real client over HTTP: the fluent API, MlflowClient,
and plain training scripts run as their own processes. Other test modules
import the `tracking` fixture from here.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

# The client would otherwise try to reach MLflow's telemetry service; tests talk only to this machine.
TELEMETRY_OFF = {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}
os.environ.update(TELEMETRY_OFF)

mlflow = pytest.importorskip("mlflow")

from mlflow import MlflowClient  # noqa: E402
from mlflow.entities import Metric, Param, RunStatus, RunTag, ViewType  # noqa: E402
from mlflow.exceptions import MlflowException  # noqa: E402

from runs import selectors  # noqa: E402
from runs.access import Principal  # noqa: E402
from runs.lifecycle import Status  # noqa: E402
from runs.models import Experiment, MetricSeries, Run, RunFile, RunProperty  # noqa: E402
from runs.models import RunTag as StudioTag  # noqa: E402
from runs.services import metrics  # noqa: E402
from tests.conftest import make_user  # noqa: E402

pytestmark = pytest.mark.django_db(transaction=True)


def reset_client_state() -> None:
    from mlflow.tracking import fluent

    while mlflow.active_run() is not None:
        mlflow.end_run()
    fluent._active_experiment_id = None
    mlflow.set_workspace(None)


@pytest.fixture
def tracking(live_server, alice, alice_key, monkeypatch):
    """The live server as alice's MLflow tracking server (workspace team-a); returns the URI."""
    for name in ("MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_RUN_ID", "MLFLOW_WORKSPACE"):
        monkeypatch.delenv(name, raising=False)
    for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", live_server.url)
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", alice_key)
    # A refused request must fail the test at once, not after minutes of client retries.
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
    reset_client_state()
    mlflow.set_tracking_uri(live_server.url)
    yield live_server.url
    reset_client_state()
    mlflow.set_tracking_uri(None)


def studio_run(run_id: str) -> Run:
    return Run.objects.select_related("experiment__workspace", "parent").get(run_id=run_id)


# --- acceptance 1: the fluent API ------------------------------------------------------------------------


def test_fluent_api_logs_params_metrics_tags_artifacts_and_a_nested_run(tracking, tmp_path):
    mlflow.set_experiment("explore-mlflow")
    with mlflow.start_run(run_name="parent", description="first try") as parent:
        mlflow.log_param("lr", 0.01)
        mlflow.log_params({"epochs": 3, "model": "logreg"})
        mlflow.log_metric("loss", 0.9, step=0)
        mlflow.log_metrics({"loss": 0.5, "acc": 0.75}, step=1)
        mlflow.set_tag("quality", "good")
        mlflow.set_tags({"team": "risk", "dataset": "2024-q1"})
        (tmp_path / "model.txt").write_text("weights")
        mlflow.log_artifact(str(tmp_path / "model.txt"), artifact_path="models")
        with mlflow.start_run(run_name="child", nested=True) as child:
            mlflow.log_param("depth", 3)
            mlflow.log_metric("loss", 0.4)

    got = mlflow.get_run(parent.info.run_id)
    assert got.info.status == "FINISHED" and got.info.run_name == "parent" and got.info.end_time
    assert got.data.params == {"lr": "0.01", "epochs": "3", "model": "logreg"}
    assert got.data.metrics == {"loss": 0.5, "acc": 0.75}
    assert {"quality": "good", "team": "risk", "mlflow.note.content": "first try"}.items() <= got.data.tags.items()
    assert mlflow.get_run(child.info.run_id).data.tags["mlflow.parentRunId"] == parent.info.run_id

    # The same run, as the studio stores it.
    run = studio_run(parent.info.run_id)
    assert (run.status, run.display_name, run.description) == (Status.COMPLETED, "parent", "first try")
    assert run.experiment.name == "explore-mlflow" and run.experiment.workspace.name == "team-a"
    assert dict(RunProperty.objects.filter(run=run).values_list("key", "value")) == got.data.params
    assert StudioTag.objects.get(run=run, key="team").value == "risk"
    assert list(RunFile.objects.filter(run=run).values_list("path", flat=True)) == ["models/model.txt"]
    kid = studio_run(child.info.run_id)
    assert kid.parent_id == run.pk and kid.status == Status.COMPLETED
    assert mlflow.artifacts.download_artifacts(
        run_id=run.run_id, artifact_path="models/model.txt", dst_path=str(tmp_path / "dl")
    ).endswith("model.txt")
    assert (tmp_path / "dl" / "model.txt").read_text() == "weights"


def test_end_run_statuses_and_a_crash_map_to_studio_statuses(tracking):
    with pytest.raises(ZeroDivisionError), mlflow.start_run() as crashed:
        1 / 0  # noqa: B018
    killed = mlflow.start_run()
    mlflow.end_run(status="KILLED")
    running = mlflow.start_run()
    assert mlflow.get_run(running.info.run_id).info.status == "RUNNING"
    mlflow.end_run()
    assert studio_run(crashed.info.run_id).status == Status.FAILED
    assert mlflow.get_run(crashed.info.run_id).info.status == "FAILED"
    assert studio_run(killed.info.run_id).status == Status.CANCELED
    assert mlflow.get_run(killed.info.run_id).info.status == "KILLED"
    assert studio_run(running.info.run_id).status == Status.COMPLETED


def test_a_plain_training_script_runs_unchanged(tracking, alice_key, tmp_path):
    script = tmp_path / "train.py"
    script.write_text(
        textwrap.dedent(
            """
            import mlflow

            mlflow.set_experiment("fraud-model")
            with mlflow.start_run(run_name="baseline") as run:
                mlflow.log_params({"lr": 0.01, "epochs": 5, "model": "logreg"})
                mlflow.set_tags({"team": "risk"})
                for epoch in range(5):
                    mlflow.log_metric("loss", 1.0 / (epoch + 1), step=epoch)
                    mlflow.log_metrics({"acc": 0.5 + epoch * 0.1}, step=epoch)
                with open("model.txt", "w") as f:
                    f.write("weights")
                mlflow.log_artifact("model.txt")
                mlflow.log_dict({"C": 1.0}, "config.json")
                mlflow.log_text("hello", "notes/readme.txt")
                print("RUN", run.info.run_id)
            """
        )
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update({"MLFLOW_TRACKING_URI": tracking, "MLFLOW_TRACKING_TOKEN": alice_key, **TELEMETRY_OFF})
    env["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"
    done = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    run_id = done.stdout.split("RUN ", 1)[1].split()[0]
    run = studio_run(run_id)
    assert run.experiment.name == "fraud-model" and run.status == Status.COMPLETED
    assert set(RunFile.objects.filter(run=run).values_list("path", flat=True)) == {
        "model.txt",
        "config.json",
        "notes/readme.txt",
    }
    assert MetricSeries.objects.get(run=run, name="loss").count == 5


# --- acceptance 1: MlflowClient ----------------------------------------------------------------------------


def _runs_for_search(client: MlflowClient) -> tuple[str, dict[str, str]]:
    exp = client.create_experiment("search-me")
    ids = {}
    for name, lr, acc, team in [("a", "0.1", 0.91, "risk"), ("b", "0.01", 0.72, "risk"), ("c", "0.1", 0.55, "ads")]:
        run = client.create_run(exp, run_name=name, tags={"team": team})
        client.log_batch(run.info.run_id, metrics=[Metric("acc", acc, 0, 0)], params=[Param("lr", lr)])
        ids[name] = run.info.run_id
    client.set_terminated(ids["c"])
    return exp, ids


def _names(runs) -> list[str]:
    return [r.info.run_name for r in runs]


def test_search_runs_filters_on_metrics_params_tags_and_attributes(tracking):
    client = MlflowClient()
    exp, _ids = _runs_for_search(client)

    def names(query: str, **kwargs) -> list[str]:
        return sorted(_names(client.search_runs([exp], query, **kwargs)))

    assert names("metrics.acc > 0.7") == ["a", "b"]
    assert names("metrics.acc >= 0.72 and params.lr = '0.1'") == ["a"]
    assert names("tags.team = 'risk'") == ["a", "b"]
    assert names("tags.team LIKE 'r%' and metrics.acc < 0.8") == ["b"]
    assert names("tags.team ILIKE 'ADS'") == ["c"]
    assert names("tags.team LIKE 'ADS'") == []  # LIKE is case-sensitive, as in MLflow
    assert names("params.lr != '0.1'") == ["b"]
    assert names("attributes.status = 'FINISHED'") == ["c"]
    assert names("attributes.status = 'RUNNING'") == ["a", "b"]
    assert names("run_name = 'b'") == ["b"]
    assert names("tags.missing IS NULL and tags.team IS NOT NULL") == ["a", "b", "c"]
    assert names("") == ["a", "b", "c"]


def test_search_runs_orders_and_pages_with_tokens(tracking):
    client = MlflowClient()
    exp, _ids = _runs_for_search(client)
    assert _names(client.search_runs([exp], order_by=["metrics.acc DESC"])) == ["a", "b", "c"]
    assert _names(client.search_runs([exp], order_by=["params.lr ASC", "metrics.acc ASC"])) == ["b", "c", "a"]
    assert _names(client.search_runs([exp], order_by=["attributes.run_name DESC"])) == ["c", "b", "a"]
    first = client.search_runs([exp], order_by=["metrics.acc DESC"], max_results=2)
    assert _names(first) == ["a", "b"] and first.token
    second = client.search_runs([exp], order_by=["metrics.acc DESC"], max_results=2, page_token=first.token)
    assert _names(second) == ["c"] and not second.token


def test_get_metric_history_returns_every_point_with_steps_and_timestamps(tracking):
    client = MlflowClient()
    run = client.create_run("0")
    for step in range(50):
        client.log_metric(run.info.run_id, "loss", 1.0 / (step + 1), timestamp=1_700_000_000_000 + step, step=step)
    client.log_metric(run.info.run_id, "loss", float("nan"), timestamp=1_700_000_000_100, step=100)
    history = client.get_metric_history(run.info.run_id, "loss")
    assert [m.step for m in history] == [*range(50), 100]
    assert [m.timestamp for m in history[:2]] == [1_700_000_000_000, 1_700_000_000_001]
    assert history[3].value == 0.25 and history[-1].value != history[-1].value  # NaN survives
    assert client.get_metric_history(run.info.run_id, "never-logged") == []


def test_log_batch_at_its_limits_and_one_past_them(tracking):
    client = MlflowClient()
    run_id = client.create_run("0").info.run_id
    store = client._tracking_client.store  # one request per call, as the client's own batches are
    at_limit = [Metric("m", float(i), 1_700_000_000_000, i) for i in range(1000)]
    store.log_batch(run_id, metrics=at_limit, params=[], tags=[])
    store.log_batch(run_id, metrics=[], params=[Param(f"p{i}", "v") for i in range(100)], tags=[])
    store.log_batch(run_id, metrics=[], params=[], tags=[RunTag(f"t{i}", "v") for i in range(100)])
    assert len(client.get_metric_history(run_id, "m")) == 1000

    past = [
        ("metrics", 1000, 1001, [Metric("x", 1.0, 0, i) for i in range(1001)], [], []),
        ("params", 100, 101, [], [Param(f"q{i}", "v") for i in range(101)], []),
        ("tags", 100, 101, [], [], [RunTag(f"u{i}", "v") for i in range(101)]),
        (
            "metrics, params, and tags",
            1000,
            1001,
            [Metric("x", 1.0, 0, i) for i in range(901)],
            [Param(f"r{i}", "v") for i in range(100)],
            [],
        ),
    ]
    for what, limit, got, m, p, t in past:
        with pytest.raises(MlflowException) as err:
            store.log_batch(run_id, metrics=m, params=p, tags=t)
        assert err.value.error_code == "INVALID_PARAMETER_VALUE"
        assert err.value.message == "INVALID_PARAMETER_VALUE: " + (
            f"A batch logging request can contain at most {limit} {what}. Got {got} {what}. "
            f"Please split up {what} across multiple requests and try again."
        )
    assert client.get_run(run_id).data.params.keys() == {f"p{i}" for i in range(100)}  # nothing of those stored

    # MlflowClient.log_batch itself splits what is over the limits, so a user's call still succeeds.
    client.log_batch(run_id, metrics=[Metric("big", float(i), 0, i) for i in range(2500)])
    assert len(client.get_metric_history(run_id, "big")) == 2500


def test_a_log_batch_body_over_one_megabyte_is_refused(tracking):
    store = MlflowClient()._tracking_client.store
    run_id = MlflowClient().create_run("0").info.run_id
    # Within every count limit, but over MLflow's 1 MB body limit.
    params = [Param(f"p{i}" + "k" * 200, "v" * 4000) for i in range(100)]
    tags = [RunTag(f"t{i}" + "k" * 200, "v" * 4000) for i in range(100)]
    metrics_ = [Metric(f"m{i}" + "k" * 240, 1.0, 0, 0) for i in range(800)]
    with pytest.raises(MlflowException, match="Batched logging API requests must be at most 1000000 bytes"):
        store.log_batch(run_id, metrics=metrics_, params=params, tags=tags)


# --- acceptance 2: the studio and the SDK see the same runs ---------------------------------------------------


def test_a_run_logged_with_mlflow_is_on_the_experiment_page_with_its_metrics_charted(tracking, alice, api):
    mlflow.set_experiment("charted")
    with mlflow.start_run() as run:
        for step in range(20):
            mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
    experiment = Experiment.objects.get(workspace__name="team-a", name="charted")
    # What the experiment page lists: the experiment's visible runs.
    assert selectors.runs_visible(Principal(user=alice)).filter(experiment=experiment, run_id=run.info.run_id).exists()
    # What the charts draw: the run's scalar series, through the same reads the pages use.
    series = MetricSeries.objects.get(run__run_id=run.info.run_id, name="loss")
    points = metrics.series_points(series, max_points=2000)
    assert points["steps"] == list(range(20)) and points["values"][1] == 0.5
    listed = api.get("/api/workspaces/team-a/experiments/charted/runs/").json()["results"]
    assert [r["run_id"] for r in listed] == [run.info.run_id]
    charted = api.get(f"/api/runs/{run.info.run_id}/metrics/points/", {"name": "loss", "max_points": 100}).json()
    assert charted["total"] == 20


def test_a_run_made_with_the_sdk_is_returned_by_mlflow_search_runs(tracking, studio_config):
    sdk = pytest.importorskip("runs.sdk")
    if not hasattr(sdk, "Workspace"):
        pytest.skip("runs.sdk has no Workspace yet")
    ws = sdk.Workspace.from_config(studio_config)
    with sdk.Experiment(workspace=ws, name="from-sdk").start_logging(display_name="sdk-run") as run:
        run.log("accuracy", 0.93)
        run.tag("origin", "sdk")
        run.add_properties({"author": "alice"})
    found = mlflow.search_runs(experiment_names=["from-sdk"], filter_string="tags.origin = 'sdk'", output_format="list")
    assert [r.info.run_id for r in found] == [run.id]
    assert found[0].info.run_name == "sdk-run" and found[0].info.status == "FINISHED"
    assert found[0].data.metrics == {"accuracy": 0.93} and found[0].data.params == {"author": "alice"}


# --- acceptance 3: params are write-once ------------------------------------------------------------------


def test_changing_a_param_fails_as_mlflows_own_server_fails_it(tracking):
    with mlflow.start_run() as run:
        mlflow.log_param("lr", 0.1)
        mlflow.log_param("lr", 0.1)  # the same value again is fine
        with pytest.raises(MlflowException) as err:
            mlflow.log_param("lr", 0.2)
    assert err.value.error_code == "INVALID_PARAMETER_VALUE"
    assert err.value.message.startswith(
        "INVALID_PARAMETER_VALUE: "
        f"Changing param values is not allowed. Param with key='lr' was already logged with value='0.1' for run "
        f"ID='{run.info.run_id}'. Attempted logging new value '0.2'."
    )
    client = MlflowClient()
    with pytest.raises(MlflowException) as err:
        client.log_batch(run.info.run_id, params=[Param("lr", "0.3"), Param("new", "x")])
    assert err.value.message.startswith(
        "INVALID_PARAMETER_VALUE: Changing param values is not allowed. Params were already logged="
        f"'[{{'key': 'lr', 'old_value': '0.1', 'new_value': '0.3'}}]' for run ID='{run.info.run_id}'."
    )
    assert client.get_run(run.info.run_id).data.params == {"lr": "0.1"}  # the batch stored nothing


# --- experiments, runs, workspaces ------------------------------------------------------------------------------


def test_experiments_create_get_search_rename_delete_and_restore(tracking):
    client = MlflowClient()
    exp_id = client.create_experiment("exp-one", tags={"mlflow.note.content": "about it"})
    with pytest.raises(MlflowException) as err:
        client.create_experiment("exp-one")
    assert err.value.error_code == "RESOURCE_ALREADY_EXISTS"
    assert client.get_experiment(exp_id).name == "exp-one"
    assert client.get_experiment_by_name("exp-one").tags == {"mlflow.note.content": "about it"}
    assert client.get_experiment_by_name("nope") is None
    client.rename_experiment(exp_id, "exp-renamed")
    assert client.get_experiment(exp_id).name == "exp-renamed"
    assert [e.name for e in client.search_experiments(filter_string="name LIKE 'exp-%'")] == ["exp-renamed"]
    client.delete_experiment(exp_id)
    assert client.get_experiment(exp_id).lifecycle_stage == "deleted"
    assert client.search_experiments(filter_string="name = 'exp-renamed'") == []
    assert len(client.search_experiments(view_type=ViewType.DELETED_ONLY)) == 1
    with pytest.raises(MlflowException, match="must be in the 'active' state"):
        client.create_run(exp_id)
    client.restore_experiment(exp_id)
    assert client.get_experiment(exp_id).lifecycle_stage == "active"
    assert client.get_experiment("0").name == "Default"


def test_runs_delete_restore_tags_and_rename(tracking):
    client = MlflowClient()
    run_id = client.create_run("0", run_name="first").info.run_id
    client.set_tag(run_id, "flag", "x")
    client.delete_tag(run_id, "flag")
    with pytest.raises(MlflowException) as err:
        client.delete_tag(run_id, "flag")
    assert err.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    client.update_run(run_id, name="second")
    assert studio_run(run_id).display_name == "second"
    client.set_tag(run_id, "mlflow.runName", "third")
    assert client.get_run(run_id).info.run_name == "third"

    client.delete_run(run_id)
    assert client.get_run(run_id).info.lifecycle_stage == "deleted"
    assert client.search_runs(["0"]) == []
    assert [r.info.run_id for r in client.search_runs(["0"], run_view_type=ViewType.DELETED_ONLY)] == [run_id]
    with pytest.raises(MlflowException, match="must be in the 'active' state"):
        client.log_metric(run_id, "x", 1.0)
    client.restore_run(run_id)
    assert [r.info.run_id for r in client.search_runs(["0"])] == [run_id]
    client.set_terminated(run_id, status=RunStatus.to_string(RunStatus.FAILED))
    assert studio_run(run_id).status == Status.FAILED


def test_the_workspace_comes_from_the_uri_or_mlflows_workspace_setting(tracking, live_server, alice, monkeypatch):
    from runs.services import workspaces

    workspaces.workspace_create("team-c", alice)
    mlflow.set_tracking_uri(f"{live_server.url}/w/team-c")
    exp_id = MlflowClient().create_experiment("in-c")
    assert Experiment.objects.get(pk=int(exp_id)).workspace.name == "team-c"
    with mlflow.start_run(experiment_id=exp_id) as run:
        mlflow.log_metric("m", 1.0)
    assert studio_run(run.info.run_id).experiment.workspace.name == "team-c"

    mlflow.set_tracking_uri(live_server.url)  # no workspace in the URI: alice's first one, team-a
    assert MlflowClient().get_experiment_by_name("in-c") is None
    mlflow.set_workspace("team-c")  # MLflow's own workspace setting (the X-MLFLOW-WORKSPACE header)
    assert MlflowClient().get_experiment_by_name("in-c").experiment_id == exp_id
    mlflow.set_workspace("team-b")  # bob's workspace: not alice's
    with pytest.raises(MlflowException) as err:
        MlflowClient().create_experiment("sneaky")
    assert err.value.error_code == "RESOURCE_DOES_NOT_EXIST"


def test_basic_auth_with_the_token_as_password(tracking, alice_key, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_TOKEN")
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "alice")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", alice_key)
    assert MlflowClient().create_run("0").info.user_id == "alice"
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "rs_not-a-token")
    with pytest.raises(MlflowException) as err:
        MlflowClient().create_run("0")
    assert err.value.error_code == "UNAUTHENTICATED"


def test_another_workspaces_user_can_neither_read_nor_write(tracking, bob_key, monkeypatch):
    run_id = MlflowClient().create_run("0").info.run_id
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", bob_key)
    bob = MlflowClient()
    for attempt in (
        lambda: bob.get_run(run_id),
        lambda: bob.log_metric(run_id, "x", 1.0),
        lambda: bob.log_param(run_id, "p", "v"),
        lambda: bob.set_tag(run_id, "t", "v"),
        lambda: bob.set_terminated(run_id),
        lambda: bob.delete_run(run_id),
    ):
        with pytest.raises(MlflowException) as err:
            attempt()
        assert err.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    assert bob.search_runs([studio_run(run_id).experiment_id]) == []
    assert studio_run(run_id).status == Status.RUNNING


def test_a_member_of_two_workspaces_logs_to_the_one_in_the_uri(tracking, live_server, monkeypatch):
    from runs.models import Workspace
    from runs.services import workspaces

    carol = make_user("carol", "team-carol")
    workspaces.member_add(Workspace.objects.get(name="team-a"), carol)
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", workspaces.token_create(carol, "t")[1])
    assert Experiment.objects.get(pk=int(MlflowClient().create_experiment("mine"))).workspace.name == "team-carol"
    mlflow.set_tracking_uri(f"{live_server.url}/w/team-a")
    assert Experiment.objects.get(pk=int(MlflowClient().create_experiment("shared"))).workspace.name == "team-a"
