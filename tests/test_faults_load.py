"""What the load test (tests/benchmarks/soak_load.py) found, kept from coming back.

50 runs each logging 100 points/s made the SDK send a request every ~50 ms per run (every
few points) and the runner append its log every 0.2 s: on a 2-core studio the requests
alone took more CPU than there was, and latencies grew to seconds. A steady logger now
sends about one metric batch and one log append a second, while a flush and a first line
still go at once.
"""

from __future__ import annotations

import time

import pytest

from runs.sdk import Experiment, Workspace, _sender

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def sender(monkeypatch):
    """A sender of this test's own, so its request counters see only this test."""
    fresh = _sender.Sender()
    monkeypatch.setattr(_sender, "_SENDER", fresh)
    yield fresh
    fresh.close()


@pytest.fixture
def run(studio_config):
    return Experiment(Workspace.from_config(studio_config), "load-regressions").start_logging()


def stored(api, run_id: str, name: str) -> list:
    response = api.get(f"/api/runs/{run_id}/metrics/points/?name={name}")
    return response.json()["values"] if response.status_code == 200 else []


def test_a_steady_logger_sends_about_one_batch_a_second(sender, run, api):
    steps = 30  # 3 s at 10 steps/s, 10 metrics a step: 100 points/s
    started = time.monotonic()
    for step in range(steps):
        for m in range(10):
            run.log(f"m{m}", step)
        time.sleep(max(0.0, started + (step + 1) * 0.1 - time.monotonic()))
    batches_while_logging = sender.sent_batches
    run.flush()
    assert all(stored(api, run.id, f"m{m}") == list(range(steps)) for m in range(10))
    # One batch a second (+1 for timing): before, ~one per 50 ms, 40 or more here.
    assert batches_while_logging <= 4, batches_while_logging
    assert sender.sent_points == steps * 10


def test_a_lone_point_is_sent_within_the_linger_without_a_flush(sender, run, api):
    run.log("lone", 1.5)
    logged = time.monotonic()
    while not stored(api, run.id, "lone") and time.monotonic() - logged < 10:
        time.sleep(0.05)
    waited = time.monotonic() - logged
    assert stored(api, run.id, "lone") == [1.5]
    assert 0.9 <= waited < 2.5, waited  # held back about STUDIO_METRICS_LINGER_SECONDS (1 s), no longer


def test_a_flush_does_not_wait_for_the_linger(sender, run, api):
    run.log("now", 1)
    started = time.monotonic()
    run.flush()
    assert time.monotonic() - started < 0.8
    assert stored(api, run.id, "now") == [1]


def test_the_runner_appends_a_steadily_written_log_about_once_a_second(live_server, alice_key, tmp_path):
    """The real LogShipper against the live studio, with a real run token; its requests are counted."""
    import threading

    from runs.models import Run
    from runs.runner import Api, LogShipper
    from runs.services import execution
    from tests.e2e import Studio

    studio = Studio(live_server.url, alice_key)
    studio.experiment("load-regressions")
    run_id = studio.submit("load-regressions", {"a.py": "print(1)"}, "a.py")
    claimed = execution.run_claim(Run.objects.get(run_id=run_id).pk, "test-host")
    assert claimed is not None
    api = Api(live_server.url, run_id, claimed[1])
    appends = []
    request = api.request

    def counted(method, path, **kwargs):
        if path == "logs/content/":
            appends.append(time.monotonic())
        return request(method, path, **kwargs)

    api.request = counted
    log = tmp_path / "driver.txt"
    log.write_bytes(b"")
    shipper = LogShipper(api, {"azureml-logs/70_driver_log.txt": log}, None)
    shipper.start()
    first = b"first line after a quiet start\n"
    with open(log, "ab", buffering=0) as out:
        out.write(first)
        written = time.monotonic()
        while studio.log(run_id) != first and time.monotonic() - written < 5:
            time.sleep(0.02)
        first_seen = time.monotonic() - written
        # Then 3 s of a line every 20 ms.
        lines = [f"line {i:04d}\n".encode() for i in range(150)]
        for line in lines:
            out.write(line)
            time.sleep(0.02)
    steady = [t for t in appends if t > written + first_seen]
    assert shipper.finish(time.monotonic() + 30, threading.Event())
    assert studio.log(run_id) == first + b"".join(lines)  # every byte, once
    assert first_seen < 0.8, first_seen  # a line after a quiet spell goes at once
    assert len(steady) <= 5, len(steady)  # about one a second, not one every 0.2 s (15+)


def test_a_runner_heartbeats_as_often_as_the_studio_asks(live_server, alice_key, tmp_path, settings):
    """Four beats per STUDIO_HEARTBEAT_TIMEOUT, at most one every 5 s (was one a second)."""
    import threading

    from runs.models import Run
    from runs.runner import Runner
    from runs.services import execution
    from tests.e2e import Studio

    settings.STUDIO_HEARTBEAT_TIMEOUT = 20.0
    studio = Studio(live_server.url, alice_key)
    studio.experiment("load-regressions")
    run_id = studio.submit("load-regressions", {"a.py": "print(1)"}, "a.py")
    claimed = execution.run_claim(Run.objects.get(run_id=run_id).pk, "test-host")
    assert claimed is not None
    (tmp_path / "runner").mkdir()
    runner = Runner(tmp_path, {"run_id": run_id, "studio_url": live_server.url}, claimed[1])
    beats = []
    request = runner.api.request

    def counted(method, path, **kwargs):
        response = request(method, path, **kwargs)
        if path == "runner/heartbeat/":
            beats.append(response.json())
        return response

    runner.api.request = counted
    beating = threading.Thread(target=runner._heartbeats, daemon=True)
    beating.start()
    time.sleep(3.0)
    runner.finished.set()
    beating.join(timeout=10)
    assert [b["heartbeat_seconds"] for b in beats] == [5.0]  # one beat in 3 s, not 3 or 4
    settings.STUDIO_HEARTBEAT_TIMEOUT = 2.0
    assert execution.runner_instructions(Run.objects.get(run_id=run_id))["heartbeat_seconds"] == 0.5
