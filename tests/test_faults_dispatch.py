"""A worker that dies right after starting a runner, before recording it (or cannot record it
because the database is away at that moment): the run goes on and ends as its script does.

The worker's steps are done here for real up to the crash point — claim, unpack, start the
detached runner — and the step that records the runner's pid is skipped, as a SIGKILL or a
database outage there would. A real worker then watches the host. Before, its monitor took
the run for a dispatch interrupted before the runner started and failed it while its script
was running (and the run's token died with it, which stopped the script).
"""

from __future__ import annotations

import pytest

from runs.compute import local
from runs.models import Run
from runs.services import execution
from tests.e2e import Studio

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

SCRIPT = """\
import time
for i in range(8):
    print(f"tick {i}", flush=True)
    time.sleep(1)
"""


def test_a_runner_whose_worker_died_before_recording_it_runs_to_completion(
    live_server, alice, alice_key, settings, monkeypatch, start_worker
):
    settings.STUDIO_URL = live_server.url
    studio = Studio(live_server.url, alice_key)
    studio.experiment("fault-launch")
    run_id = studio.submit("fault-launch", {"tick.py": SCRIPT}, "tick.py")
    claimed = execution.run_claim(Run.objects.get(run_id=run_id).pk, local.hostname())
    assert claimed is not None
    run, key = claimed
    local.launch(run, key)  # the runner starts; the worker "dies" before runner_launched()
    monkeypatch.setenv("STUDIO_HEARTBEAT_TIMEOUT", "2")  # the monitor judges the dispatch after 2 s
    start_worker("local")
    done = studio.wait_status(run_id, {"Completed", "Failed", "Canceled"}, timeout=60)
    events = [(e["to_status"], e["reason"]) for e in studio.events(run_id)]
    assert done["status"] == "Completed", events
    assert studio.log(run_id) == "".join(f"tick {i}\n" for i in range(8)).encode()
    assert Run.objects.get(run_id=run_id).runner_pid is not None  # recorded from the runner's report
