"""SPEC §1's submit, cancel, fail and submit_child code blocks, run as written against `make run`.

The studio is a real `manage.py up` (what `make run` starts); a second compute
target `gpu-cluster` is registered and served by its own worker process, as
the README tells users to do for a target registered after start-up.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import time

import pytest

from tests.e2e import HELLO_WITH_DELAY, group_alive
from tests.stack import ROOT, studio_stack

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

PARENT = textwrap.dedent("""\
    # parent.py
    # This script controls the launching of child scripts
    from runs.sdk import Run, ScriptRunConfig

    run = Run.get_context()
    ws = run.experiment.workspace
    compute_target = ws.compute_targets["gpu-cluster"]

    child_args = ['Apple', 'Banana', 'Orange']
    for arg in child_args:
        run.log('Status', f'Launching {arg}')
        child_config = ScriptRunConfig(source_directory=".", script='child.py', arguments=['--fruit', arg],
                                       compute_target=compute_target)
        # Starts the run asynchronously
        run.submit_child(child_config)

    # Experiment will "complete" successfully at this point.
    # Instead of returning immediately, block until child runs complete

    for child in run.get_children():
        child.wait_for_completion()
    """)

CHILD = textwrap.dedent("""\
    import argparse
    from runs.sdk import Run
    parser = argparse.ArgumentParser()
    parser.add_argument("--fruit")
    args = parser.parse_args()
    child_run = Run.get_context()
    print(f"fruit={args.fruit} parent={child_run.parent.id}")
    child_run.log("fruit", args.fruit)
    """)


@pytest.fixture(scope="module")
def stack():
    database = "postgres" if os.environ.get("DATABASE_URL", "").startswith("postgres") else "sqlite"
    with studio_stack(database) as running:
        yield running


@pytest.fixture(scope="module")
def gpu_worker(stack):
    import requests

    response = requests.post(
        f"{stack.url}/api/workspaces/{stack.workspace}/computes/",
        json={"name": "gpu-cluster", "max_concurrent_runs": 3},
        headers={"Authorization": f"Token {stack.token}"},
        timeout=10,
    )
    assert response.status_code == 201, response.text
    log = stack.data_dir / "gpu-worker.log"
    with open(log, "wb") as out:
        # As the README says for a target registered after start-up: a worker for it, told where the studio is.
        proc = subprocess.Popen(
            [sys.executable, "manage.py", "worker", "--target", "gpu-cluster"],
            cwd=ROOT,
            env={**stack.env, "STUDIO_URL": stack.url},
            stdout=out,
            stderr=subprocess.STDOUT,
            process_group=0,
        )
    deadline = time.monotonic() + 60
    while "ready" not in log.read_text():
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.2)
    yield proc
    proc.terminate()
    proc.wait(timeout=30)


@pytest.fixture
def project(tmp_path, monkeypatch):
    (tmp_path / "hello_with_delay.py").write_text(HELLO_WITH_DELAY)
    (tmp_path / "parent.py").write_text(PARENT)
    (tmp_path / "child.py").write_text(CHILD)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _script_pid(run) -> int:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        events = run._client.get(f"runs/{run.id}/events/")
        for event in events:
            if match := re.search(r"script started \(pid (\d+)\)", event["reason"]):
                return int(match.group(1))
        time.sleep(0.05)
    raise AssertionError("the script never started")


def test_cancel_and_fail_a_submitted_script_as_written(stack, project, capsys):
    from runs.sdk import Experiment, ScriptRunConfig, Workspace

    ws = Workspace.from_config(str(stack.data_dir / "config.json"))
    exp = Experiment(workspace=ws, name="explore-runs")

    src = ScriptRunConfig(source_directory=".", script="hello_with_delay.py")
    local_run = exp.submit(src)
    print(local_run.get_status())
    pid = _script_pid(local_run)

    local_run.cancel()
    print(local_run.get_status())

    deadline = time.monotonic() + 5
    while group_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not group_alive(pid), "cancel must stop the script's process group"
    local_run.wait_for_completion(wait_post_processing=True, raise_on_error=False)
    assert local_run.get_status() == "Canceled"

    local_run = exp.submit(src)
    local_run.fail()
    print(local_run.get_status())
    local_run.wait_for_completion(wait_post_processing=True, raise_on_error=False)
    assert local_run.get_status() == "Failed"

    printed = capsys.readouterr().out.split()
    assert printed[0] in ("Queued", "Preparing", "Starting", "Running")
    assert printed[1] in ("CancelRequested", "Canceled")
    assert printed[2] in ("CancelRequested", "Failed")


def test_submit_child_runs_land_on_the_gpu_cluster(stack, gpu_worker, project):
    from runs.sdk import Experiment, ScriptRunConfig, Workspace

    ws = Workspace.from_config(str(stack.data_dir / "config.json"))
    exp = Experiment(workspace=ws, name="explore-runs")
    parent = exp.submit(ScriptRunConfig(source_directory=".", script="parent.py"))
    parent.wait_for_completion(show_output=False, raise_on_error=True)
    assert parent.get_status() == "Completed"

    children = list(parent.get_children())
    assert len(children) == 3
    assert {c.get_details()["target"] for c in children} == {"gpu-cluster"}
    assert all(c.get_status() == "Completed" for c in children)
    fruits = sorted(c.get_metrics()["fruit"] for c in children)
    assert fruits == ["Apple", "Banana", "Orange"]
    for child in children:
        log = child._client.request(
            "GET", f"runs/{child.id}/logs/content/", params={"name": "azureml-logs/70_driver_log.txt"}
        ).content
        assert f"parent={parent.id}".encode() in log
    assert parent.get_metrics()["Status"] == ["Launching Apple", "Launching Banana", "Launching Orange"]
    assert [r.id for r in parent.get_children(recursive=True)] != []
