"""Finding the studio: config.json search order, tokens, the credentials file, Run.get_context()."""

from __future__ import annotations

import json
import logging
import os
import socket
import stat

import pytest

from runs.models import Run as RunRow
from runs.sdk import (
    AuthenticationException,
    Experiment,
    NotFoundException,
    Run,
    RunEnvironmentException,
    UserErrorException,
    Workspace,
    _context,
    credentials,
)
from runs.tokens import hash_key, new_run_key

RUN_ENV = ("STUDIO_RUN_ID", "STUDIO_RUN_TOKEN", "STUDIO_URL", "STUDIO_WORKSPACE", "STUDIO_EXPERIMENT", "STUDIO_TOKEN")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch, tmp_path):
    """No studio variables from the outside, a credentials folder of our own, no cached context run."""
    for name in RUN_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("STUDIO_CONFIG_HOME", str(tmp_path / "config-home"))
    _context._cache.clear()
    yield
    _context._cache.clear()


def write_config(folder, **data) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "config.json"
    path.write_text(json.dumps(data))
    return str(path)


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


# --- credentials file ------------------------------------------------------------------------------


def test_credentials_are_saved_privately_and_read_back(tmp_path):
    path = credentials.save("http://127.0.0.1:8000/", "rs_first")
    assert path == tmp_path / "config-home" / "credentials.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    credentials.save("http://other:9000", "rs_second", make_default=False)
    assert json.loads(path.read_text()) == {
        "default": "http://127.0.0.1:8000",
        "servers": {"http://127.0.0.1:8000": {"token": "rs_first"}, "http://other:9000": {"token": "rs_second"}},
    }
    assert credentials.token_for("http://127.0.0.1:8000") == "rs_first"  # trailing slash does not matter
    assert credentials.token_for("http://nowhere") is None
    assert credentials.default_url() == "http://127.0.0.1:8000"
    credentials.save("http://127.0.0.1:8000", "rs_replaced")
    assert credentials.token_for("http://127.0.0.1:8000/") == "rs_replaced"
    assert credentials.remove("http://127.0.0.1:8000") is True and credentials.remove("http://127.0.0.1:8000") is False
    assert credentials.default_url() == "http://other:9000"
    assert [p.name for p in path.parent.iterdir()] == ["credentials.json"]  # no temporary file left


def test_a_missing_credentials_file_is_empty_and_a_broken_one_is_named(tmp_path):
    assert credentials.load() == {"default": None, "servers": {}}
    credentials.credentials_path().parent.mkdir(parents=True)
    credentials.credentials_path().write_text("{broken")
    with pytest.raises(UserErrorException, match=r"credentials.json is not valid JSON; fix it or delete it"):
        credentials.token_for("http://x")


# --- Workspace.from_config ------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_from_config_looks_in_the_folder_then_studio_then_azureml_then_parents(
    live_server, alice, alice_key, tmp_path, monkeypatch
):
    good = {"url": live_server.url, "workspace_name": "team-a", "token": alice_key}
    bad = {"url": live_server.url, "workspace_name": "not-mine", "token": alice_key}
    project = tmp_path / "project"
    deep = project / "src" / "models"
    deep.mkdir(parents=True)
    write_config(project / ".azureml", **bad)
    write_config(project / ".studio", **good)
    monkeypatch.chdir(deep)
    assert Workspace.from_config()._config_path == project / ".studio" / "config.json"  # walked up two folders
    write_config(project, **good)
    assert Workspace.from_config()._config_path == project / "config.json"  # ./config.json comes first
    (project / "config.json").unlink()
    (project / ".studio" / "config.json").unlink()
    with pytest.raises(NotFoundException, match="workspace 'not-mine'"):
        Workspace.from_config()  # .azureml/ is the last place looked in
    write_config(deep / ".azureml", **good)
    ws = Workspace.from_config(deep)
    assert ws._config_path == deep / ".azureml" / "config.json" and ws.name == "team-a"


@pytest.mark.django_db(transaction=True)
def test_from_config_reads_a_file_path_and_its_experiment_name(studio_config):
    data = json.loads(studio_config.read_text())
    studio_config.write_text(json.dumps({**data, "experiment_name": "attached"}))
    ws = Workspace.from_config(studio_config)
    assert ws.name == "team-a" and ws.url == data["url"] and ws.experiment_name == "attached"


def test_from_config_says_where_it_looked_and_how_to_fix_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserErrorException) as missing:
        Workspace.from_config()
    message = str(missing.value)
    assert "config.json could not be found in" in message and str(tmp_path / "config.json") in message
    assert "studio folder attach" in message and "var/config.json" in message


@pytest.mark.django_db(transaction=True)
def test_token_precedence_env_then_config_then_credentials(live_server, alice, alice_key, tmp_path, monkeypatch):
    url = live_server.url
    path = write_config(tmp_path / "a", url=url, workspace_name="team-a", token="rs_stale")
    monkeypatch.setenv("STUDIO_TOKEN", alice_key)
    assert Workspace.from_config(path)._client.token == alice_key  # env STUDIO_TOKEN wins
    monkeypatch.delenv("STUDIO_TOKEN")
    with pytest.raises(AuthenticationException):
        Workspace.from_config(path)  # then the config's token (stale here)

    credentials.save(url, "rs_stale_too")
    path = write_config(tmp_path / "b", url=url, workspace_name="team-a", token=alice_key)
    assert Workspace.from_config(path)._client.token == alice_key  # config beats the credentials file
    path = write_config(tmp_path / "c", url=url, workspace_name="team-a")
    credentials.save(url + "/", alice_key)
    assert Workspace.from_config(path)._client.token == alice_key  # the credentials file (`studio login`)

    credentials.remove(url)
    with pytest.raises(UserErrorException, match=f"no API token for {url}: .*studio login --url {url}"):
        Workspace.from_config(path)


@pytest.mark.django_db(transaction=True)
def test_studio_url_overrides_the_configs_url(live_server, alice, alice_key, tmp_path, monkeypatch):
    path = write_config(tmp_path, url=closed_port_url(), workspace_name="team-a", token=alice_key)
    monkeypatch.setenv("STUDIO_URL", live_server.url)
    assert Workspace.from_config(path).url == live_server.url


# --- Run.get_context ----------------------------------------------------------------------------------


def test_outside_a_run_get_context_is_an_offline_run_that_prints(capsys):
    run = Run.get_context()
    assert run.id.startswith("OfflineRun_") and len(run.id) == len("OfflineRun_") + 36
    with run:
        run.log("accuracy", 0.91)
        run.log_list("losses", [1, 2])
        run.tag("quality", "good")
        child = run.child_run("fold")
    out = capsys.readouterr().out
    assert out == (
        f"[START] Run {run.id} context\n"
        "Attempted to log scalar metric accuracy:\n0.91\n"
        "Attempted to log list metric losses:\n[1, 2]\n"
        "Attempted to set tag quality to good\n"
        f"[STOP] Run {run.id} context\n"
    )
    assert child.id == f"{run.id}.fold" and child.parent is run
    assert not hasattr(run, "get_metrics") and not hasattr(run, "get_status") and not hasattr(run, "experiment")
    run.complete()
    run.cancel()
    with pytest.raises(RunEnvironmentException, match="STUDIO_RUN_ID"):
        Run.get_context(allow_offline=False)


@pytest.fixture
def submitted_child(studio_config, monkeypatch):
    """A run the way a runner presents it: a submitted run, its token and environment set."""
    ws = Workspace.from_config(studio_config)
    parent = Experiment(ws, "parent-exp").start_logging()
    child = parent.child_run()
    key = new_run_key()
    RunRow.objects.filter(run_id=child.id).update(run_type="submitted", token_hash=hash_key(key))
    monkeypatch.setenv("STUDIO_URL", ws.url)
    monkeypatch.setenv("STUDIO_RUN_ID", child.id)
    monkeypatch.setenv("STUDIO_RUN_TOKEN", key)
    monkeypatch.setenv("STUDIO_WORKSPACE", "team-a")
    monkeypatch.setenv("STUDIO_EXPERIMENT", "parent-exp")
    return parent, child, key


@pytest.mark.django_db(transaction=True)
def test_inside_a_submitted_run_get_context_is_that_run(submitted_child, caplog):
    parent, child, key = submitted_child
    run = Run.get_context()
    assert run is Run.get_context() and run is Run.get_context(allow_offline=False)  # one cached instance
    assert run.id == child.id and run.parent.id == parent.id and run.experiment.name == "parent-exp"
    assert run._client.token == key
    run.log("loss", 0.5)
    run.log("loss", 0.25)
    run.complete()  # flushes; the process exit decides the status
    assert RunRow.objects.get(run_id=child.id).status == "Running"
    assert run.get_metrics() == {"loss": [0.5, 0.25]}
    with caplog.at_level(logging.WARNING, logger="runs.sdk"):
        run.fail("bad data")
        run.cancel()
    assert RunRow.objects.get(run_id=child.id).status == "Running"
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "status, which follows the script's exit code" in messages and "cannot cancel itself" in messages
    with run.child_run("inner") as inner:  # the run token may create and drive its own children
        inner.log("x", 1)
    assert inner.get_status() == "Completed" and inner.parent.id == child.id
    with Run.get_context() as same:
        same.log("loss", 0.125)
    assert run.get_metrics()["loss"] == [0.5, 0.25, 0.125]
    assert RunRow.objects.get(run_id=child.id).status == "Running"


@pytest.mark.django_db(transaction=True)
def test_inside_a_submitted_run_from_config_falls_back_to_the_runs_environment(
    submitted_child, tmp_path_factory, monkeypatch
):
    parent, child, key = submitted_child
    monkeypatch.chdir(tmp_path_factory.mktemp("no-config-here"))  # studio_config's folder has a config.json
    ws = Workspace.from_config()
    assert ws.name == "team-a" and ws._client.token == key and ws.experiment_name == "parent-exp"
    exp = Experiment(ws, "parent-exp")  # the run's own experiment is visible to its token
    assert [r.id for r in exp.get_runs()] == [parent.id]  # a run token sees its branch and its ancestors
    assert os.environ["STUDIO_RUN_ID"] == child.id
