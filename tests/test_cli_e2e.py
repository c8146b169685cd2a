"""The CLI end to end with a real Celery worker: attach, submit-script, stream, Ctrl-C, follow, cancel, download."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time

import pytest

from tests.e2e import HELLO_WITH_DELAY, group_alive
from tests.test_cli_support import CLI, assert_one_line_error, cli

pytest_plugins = ["tests.test_cli_support"]
pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

TRAIN = """\
import os, sys
print("training with", sys.argv[1:], flush=True)
for epoch in range(3):
    print(f"epoch {epoch} loss {1 / (epoch + 1):.3f}", flush=True)
os.makedirs("outputs", exist_ok=True)
open("outputs/model.txt", "w").write("weights")
"""
BAD = "print('about to fail', flush=True)\nraise SystemExit(3)\n"


@pytest.fixture
def project(logged_in, tmp_path):
    """A folder attached with `studio folder attach`, holding the scripts."""
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "train.py").write_text(TRAIN)
    (folder / "bad.py").write_text(BAD)
    (folder / "hello_with_delay.py").write_text(HELLO_WITH_DELAY)
    result = cli("folder", "attach", "-w", "team-a", "-e", "testexperiment", env=logged_in, cwd=folder)
    assert result.returncode == 0, result.stderr
    return folder


def script_pid(studio, run_id: str, timeout: float = 30.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for event in studio.events(run_id):
            if match := re.search(r"script started \(pid (\d+)\)", event["reason"]):
                return int(match.group(1))
        time.sleep(0.05)
    raise AssertionError(f"the script of {run_id} never started")


def test_submit_script_streams_the_log_and_exits_by_the_outcome(project, logged_in, studio, local_worker, tmp_path):
    # acceptance 2, as typed in the how-to, through the installed `studio` command
    done = cli("run", "submit-script", "-c", "sklearn", "-e", "testexperiment", "train.py", "--epochs", "3",
               env=logged_in, cwd=project, timeout=120, entry_point=True)  # fmt: skip
    assert done.returncode == 0, (done.stdout, done.stderr)
    assert "training with ['--epochs', '3']" in done.stdout and "epoch 2 loss 0.333" in done.stdout
    assert "Status: Completed" in done.stdout
    run_id = re.search(r"^RunId: (\S+)", done.stdout, flags=re.M).group(1)
    run = studio.run(run_id)
    assert run["experiment"] == "testexperiment" and run["run_definition"]["script"] == "train.py"
    assert run["run_definition"]["environmentVariables"] == {"PYTHONUNBUFFERED": "1"}  # from sklearn.runconfig

    saved = cli("run", "download", "-r", run_id, "-d", str(tmp_path / "dl"), "-o", "json", env=logged_in)
    assert saved.returncode == 0, saved.stderr
    assert (tmp_path / "dl" / "outputs" / "model.txt").read_text() == "weights"
    assert "epoch 2" in (tmp_path / "dl" / "azureml-logs" / "70_driver_log.txt").read_text()

    failed = cli("run", "submit-script", "-c", "sklearn", "bad.py", env=logged_in, cwd=project, timeout=120)
    assert failed.returncode == 1, (failed.stdout, failed.stderr)
    assert "about to fail" in failed.stdout and "Status: Failed" in failed.stdout
    assert failed.stderr.strip().splitlines()[-1].startswith("error: run ")
    assert "ended Failed: the script failed with exit code 3" in failed.stderr

    queued = cli("run", "submit-script", "--async", "--tag", "owner=me", "train.py", env=logged_in, cwd=project)
    record = json.loads(queued.stdout)
    assert queued.returncode == 0 and record["tags"] == {"owner": "me"} and record["experimentName"] == "testexperiment"
    follow = cli("run", "logs", "-r", record["runId"], "--follow", env=logged_in, timeout=120)
    assert follow.returncode == 0 and "epoch 2 loss 0.333" in follow.stdout


def test_ctrl_c_leaves_the_run_running_and_cancel_stops_the_script(project, logged_in, studio, local_worker):
    submit = subprocess.Popen(
        [*CLI, "run", "submit-script", "hello_with_delay.py"],
        env=logged_in,
        cwd=project,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        seen = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = submit.stdout.readline()
            seen.append(line)
            if line.startswith("line 1") or not line:
                break
        assert "line 1\n" in seen, seen
        submit.send_signal(signal.SIGINT)
        _, err = submit.communicate(timeout=30)
    finally:
        if submit.poll() is None:
            submit.kill()
    assert submit.returncode == 130, err
    run_id = seen[0].split()[1]
    assert f"studio run cancel -r {run_id}" in err and "keeps running" in err
    assert studio.status(run_id) == "Running"

    pid = script_pid(studio, run_id)
    follow = subprocess.Popen(
        [*CLI, "run", "logs", "-r", run_id, "--follow"],
        env=logged_in,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(1.0)
        # acceptance 3: cancel stops the running script (its whole process group)
        canceled = cli("run", "cancel", "-r", run_id, env=logged_in)
        assert canceled.returncode == 0 and json.loads(canceled.stdout)["status"] in ("CancelRequested", "Canceled")
        stopped = time.monotonic()
        while group_alive(pid) and time.monotonic() - stopped < 10:
            time.sleep(0.05)
        assert not group_alive(pid), "the script's process group is still alive"
        out, err = follow.communicate(timeout=60)
    finally:
        if follow.poll() is None:
            follow.kill()
    assert follow.returncode == 1 and "line 0\n" in out and f"run {run_id} ended Canceled" in err
    assert studio.wait_status(run_id, "Canceled", timeout=30)["status"] == "Canceled"
    assert_one_line_error(cli("run", "fail", "-r", run_id, env=logged_in), 6, "Canceled")
