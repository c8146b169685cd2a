"""Remote execution end to end: a real Celery worker, the runner, a live studio.

Each test submits real scripts and watches real processes.
"""

from __future__ import annotations

import os
import re
import signal
import time

import pytest

from runs.lifecycle import ACTIVE
from runs.models import Run, RunEvent
from runs.services import execution
from tests.e2e import HELLO_WITH_DELAY, Studio, group_alive, pid_alive

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def studio(live_server, alice, alice_key) -> Studio:
    client = Studio(live_server.url, alice_key)
    client.experiment("remote")
    return client


def script_pid(studio: Studio, run_id: str, timeout: float = 20.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for event in studio.events(run_id):
            if match := re.search(r"script started \(pid (\d+)\)", event["reason"]):
                return int(match.group(1))
        time.sleep(0.05)
    raise AssertionError("the script never started")


def test_a_submitted_script_runs_to_completion_with_logs_and_outputs(studio, local_worker):
    run_id = studio.submit(
        "remote",
        {
            "train.py": "import sys\nprint('hello from the script')\nprint('to stderr', file=sys.stderr)\n"
            "open('outputs/model.txt', 'w').write('weights')\n",
        },
        "train.py",
    )
    run = studio.wait_status(run_id, "Completed", timeout=60)
    assert run["exit_code"] == 0 and run["end_time_utc"]
    assert [e["to_status"] for e in studio.events(run_id)] == [
        "Preparing",
        "Starting",
        "Running",
        "Finalizing",
        "Completed",
    ]
    assert studio.log(run_id) == b"hello from the script\nto stderr\n"
    diagnostic = studio.log(run_id, "azureml-logs/60_control_log.txt").decode()
    for step in ("runner pid", "script started", "script exited with code 0", "uploaded 1 output file"):
        assert step in diagnostic
    files = studio.ok("GET", f"runs/{run_id}/files/")
    assert [f["path"] for f in files] == ["outputs/model.txt"]


def test_a_failing_script_fails_with_its_exit_code_and_log_tail(studio, local_worker):
    run_id = studio.submit("remote", {"bad.py": "print('about to fail')\nraise SystemExit(3)\n"}, "bad.py")
    run = studio.wait_status(run_id, "Failed", timeout=60)
    assert run["exit_code"] == 3
    assert "exit code 3" in run["error"]["error"]["message"]
    assert "about to fail" in run["error"]["error"]["logTail"]
    assert b"exit code: 3" in studio.log(run_id, "azureml-logs/80_error_log.txt")


def test_cancel_stops_the_whole_process_group_and_uploads_outputs(studio, local_worker):
    script = (
        "import subprocess, time\nopen('outputs/partial.txt','w').write('x')\n"
        "subprocess.Popen(['sleep', '300'])\n" + HELLO_WITH_DELAY
    )
    run_id = studio.submit("remote", {"hello_with_delay.py": script}, "hello_with_delay.py")
    pid = script_pid(studio, run_id)
    studio.wait_status(run_id, "Running")
    started = time.monotonic()
    assert studio.ok("POST", f"runs/{run_id}/cancel/")["status"] in ("CancelRequested", "Canceled")
    while group_alive(pid) and time.monotonic() - started < 10:
        time.sleep(0.02)
    assert not group_alive(pid), "the script's process group is still alive"
    assert time.monotonic() - started < 2.0
    run = studio.wait_status(run_id, "Canceled", timeout=30)
    assert run["status"] == "Canceled"
    assert [f["path"] for f in studio.ok("GET", f"runs/{run_id}/files/")] == ["outputs/partial.txt"]
    assert "SIGTERM to process group" in studio.log(run_id, "azureml-logs/60_control_log.txt").decode()


def test_a_script_that_ignores_sigterm_is_killed_after_the_grace_period(studio, local_worker):
    script = (
        "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nprint('stubborn', flush=True)\n"
        "time.sleep(300)\n"
    )
    run_id = studio.submit("remote", {"stubborn.py": script}, "stubborn.py", cancel_grace_seconds=1.5)
    pid = script_pid(studio, run_id)
    studio.wait_status(run_id, "Running")
    time.sleep(0.5)  # let it install its handler
    started = time.monotonic()
    studio.ok("POST", f"runs/{run_id}/cancel/")
    time.sleep(1.0)
    assert pid_alive(pid), "SIGTERM alone should not have stopped it"
    while pid_alive(pid) and time.monotonic() - started < 10:
        time.sleep(0.02)
    assert not pid_alive(pid)
    assert 1.4 < time.monotonic() - started < 4.0
    studio.wait_status(run_id, "Canceled", timeout=30)
    assert "SIGKILL" in studio.log(run_id, "azureml-logs/60_control_log.txt").decode()


def test_a_queued_run_canceled_before_a_worker_frees_up_never_starts(studio, local_worker):
    studio.ok("PATCH", "workspaces/team-a/computes/local/", json={"max_concurrent_runs": 1})
    first = studio.submit("remote", {"hello_with_delay.py": HELLO_WITH_DELAY}, "hello_with_delay.py")
    studio.wait_status(first, "Running")
    second = studio.submit("remote", {"hello_with_delay.py": HELLO_WITH_DELAY}, "hello_with_delay.py")
    time.sleep(1.0)
    assert studio.status(second) == "Queued"  # the target is full
    assert studio.ok("POST", f"runs/{second}/cancel/")["status"] == "Canceled"
    studio.ok("POST", f"runs/{first}/cancel/")
    studio.wait_status(first, "Canceled", timeout=30)
    time.sleep(1.5)  # the freed slot triggers a dispatch of queued runs
    assert studio.status(second) == "Canceled"
    assert [e["to_status"] for e in studio.events(second)] == ["Canceled"]


def test_a_queued_run_starts_when_a_slot_frees(studio, local_worker):
    studio.ok("PATCH", "workspaces/team-a/computes/local/", json={"max_concurrent_runs": 1})
    first = studio.submit("remote", {"hello_with_delay.py": HELLO_WITH_DELAY}, "hello_with_delay.py")
    studio.wait_status(first, "Running")
    second = studio.submit("remote", {"quick.py": "print('quick')"}, "quick.py")
    time.sleep(1.0)
    assert studio.status(second) == "Queued"
    studio.ok("POST", f"runs/{first}/cancel/")
    studio.wait_status(second, "Completed", timeout=30)


def test_a_printed_line_is_readable_within_two_seconds(studio, local_worker):
    script = (
        "import time\nfor i in range(300):\n    print(f'line {i} at {time.time()}', flush=True)\n    time.sleep(0.5)\n"
    )
    run_id = studio.submit("remote", {"ticker.py": script}, "ticker.py")
    studio.wait_status(run_id, "Running")
    latencies: dict[int, float] = {}
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and len(latencies) < 8:
        text = studio.log(run_id).decode()
        now = time.time()
        for number, printed in re.findall(r"line (\d+) at ([\d.]+)", text):
            latencies.setdefault(int(number), now - float(printed))
        time.sleep(0.05)
    studio.ok("POST", f"runs/{run_id}/cancel/")
    assert len(latencies) >= 8, latencies
    assert max(latencies.values()) < 2.0, latencies


def test_fail_on_an_active_submitted_run_stops_it_and_records_the_error(studio, local_worker):
    run_id = studio.submit("remote", {"hello_with_delay.py": HELLO_WITH_DELAY}, "hello_with_delay.py")
    pid = script_pid(studio, run_id)
    studio.wait_status(run_id, "Running")
    studio.ok("POST", f"runs/{run_id}/fail/", json={"error_details": "wrong data set"})
    run = studio.wait_status(run_id, "Failed", timeout=30)
    assert run["error"]["error"]["message"] == "wrong data set"
    assert not group_alive(pid)


def test_max_run_duration_ends_an_overlong_run_with_a_reason(studio, local_worker):
    run_id = studio.submit(
        "remote", {"hello_with_delay.py": HELLO_WITH_DELAY}, "hello_with_delay.py", max_run_duration_seconds=2
    )
    run = studio.wait_status(run_id, "Failed", timeout=30)
    assert "max_run_duration_seconds=2" in run["error"]["error"]["message"]


def test_killing_the_runner_makes_the_run_not_responding_then_failed(studio, local_worker):
    run_id = studio.submit("remote", {"hello_with_delay.py": HELLO_WITH_DELAY}, "hello_with_delay.py")
    pid = script_pid(studio, run_id)
    studio.wait_status(run_id, "Running")
    runner_pid = Run.objects.get(run_id=run_id).runner_pid
    os.kill(runner_pid, signal.SIGKILL)
    killed_at = time.monotonic()
    run = studio.wait_status(run_id, "Failed", timeout=60)
    assert time.monotonic() - killed_at < 60
    statuses = [e["to_status"] for e in studio.events(run_id)]
    assert statuses[-2:] == ["NotResponding", "Failed"]
    assert f"runner (pid {runner_pid})" in run["error"]["error"]["message"]
    deadline = time.monotonic() + 5
    while group_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not group_alive(pid), "the orphaned script must be stopped too"


def test_killing_the_worker_does_not_stop_a_running_run(studio, start_worker):
    worker = start_worker("local")
    run_id = studio.submit(
        "remote",
        {"slow.py": "import time\nfor i in range(4):\n    print(i, flush=True)\n    time.sleep(1)\n"},
        "slow.py",
    )
    studio.wait_status(run_id, "Running")
    worker.stop(signal.SIGKILL)
    run = studio.wait_status(run_id, "Completed", timeout=60)
    assert studio.log(run_id) == b"0\n1\n2\n3\n"
    assert run["exit_code"] == 0


def test_a_warm_worker_shutdown_leaves_runs_running(studio, start_worker):
    worker = start_worker("local")
    run_id = studio.submit("remote", {"slow.py": "import time\ntime.sleep(3)\nprint('done')\n"}, "slow.py")
    studio.wait_status(run_id, "Running")
    worker.stop(signal.SIGTERM)
    assert studio.wait_status(run_id, "Completed", timeout=60)["exit_code"] == 0


def test_a_worker_killed_mid_dispatch_leaves_an_explained_failure(studio, live_server, settings):
    """The claim happened (Preparing) but no runner ever started: the run must not hang."""
    settings.STUDIO_HEARTBEAT_TIMEOUT = 1.0
    run_id = studio.submit("remote", {"a.py": "print(1)"}, "a.py")
    run = Run.objects.get(run_id=run_id)
    claimed = execution.run_claim(run.pk, "a-host-that-died")
    assert claimed is not None
    time.sleep(1.2)
    execution.poll_runs()  # the host has no live worker monitor: NotResponding
    time.sleep(1.2)
    execution.poll_runs()  # still silent: Failed
    run.refresh_from_db()
    assert run.status == "Failed"
    assert "a-host-that-died" in RunEvent.objects.filter(run=run).last().reason


def test_a_dispatch_delivered_twice_starts_one_runner(studio, start_worker):
    from runs.tasks import dispatch_run

    run_id = studio.submit("remote", {"a.py": "print('once')"}, "a.py")
    run = Run.objects.get(run_id=run_id)
    # As if the broker redelivered it: two more copies of the same dispatch before a worker serves them.
    dispatch_run.apply_async(args=[run.pk], queue="local")
    dispatch_run.apply_async(args=[run.pk], queue="local")
    start_worker("local")
    studio.wait_status(run_id, "Completed", timeout=60)
    time.sleep(1.0)  # let the extra copies be consumed
    assert [e["to_status"] for e in studio.events(run_id)].count("Preparing") == 1
    assert studio.log(run_id) == b"once\n"


def test_tokens_never_appear_in_logs_details_or_events(studio, local_worker, tmp_path):
    script = "import os\nopen(os.environ['KEEP_TOKEN_AT'], 'w').write(os.environ['STUDIO_RUN_TOKEN'])\nprint('hi')\n"
    run_id = studio.submit(
        "remote", {"a.py": script}, "a.py", environment_variables={"KEEP_TOKEN_AT": str(tmp_path / "token")}
    )
    studio.wait_status(run_id, "Completed", timeout=60)
    token = (tmp_path / "token").read_text().encode()
    assert token.startswith(b"rt_")
    visible = b"".join(
        [
            studio.log(run_id),
            studio.log(run_id, "azureml-logs/60_control_log.txt"),
            studio.api("GET", f"runs/{run_id}/").content,
            studio.api("GET", f"runs/{run_id}/events/").content,
            studio.api("GET", f"runs/{run_id}/children/").content,
        ]
    )
    assert token not in visible
    # The token dies with the run.
    assert Studio(studio.url, token.decode()).api("GET", f"runs/{run_id}/").status_code == 401


def test_no_run_is_left_active(studio, local_worker):
    run_id = studio.submit("remote", {"a.py": "print('hi')"}, "a.py")
    studio.wait_status(run_id, "Completed", timeout=60)
    assert not Run.objects.filter(status__in=ACTIVE).exists()


def test_points_logged_just_before_a_cancel_are_delivered(studio, local_worker):
    """300,000 points take the sender about a second to deliver; the cancel lands well before that."""
    script = (
        "import time\nfrom runs.sdk import Run\nrun = Run.get_context()\n"
        "for i in range(300_000):\n    run.log('x', i)\nprint('logged', flush=True)\ntime.sleep(300)\n"
    )
    run_id = studio.submit("remote", {"t.py": script}, "t.py")
    deadline = time.monotonic() + 30
    while b"logged" not in studio.log(run_id) and time.monotonic() < deadline:
        time.sleep(0.02)
    studio.ok("POST", f"runs/{run_id}/cancel/")
    studio.wait_status(run_id, "Canceled", timeout=30)
    points = studio.ok("GET", f"runs/{run_id}/metrics/points/", params={"name": "x"})
    assert points["total"] == 300_000 and points["values"] == list(range(300_000))
