"""Memory of the whole `make run` process tree (PSS), idle and under a metric load (issue 2).

PSS divides shared pages fairly between the processes that share them, so the
sum is what the tree really costs the machine. The load: an SDK process logging
100,000 scalar points, while three submitted runs stream logs.
"""

from __future__ import annotations

import threading
import time

from tests.benchmarks.util import pss_kib
from tests.e2e import Studio
from tests.stack import studio_stack

TICKER = "import time\nfor i in range(150):\n    print(f'tick {i}', flush=True)\n    time.sleep(0.1)\n"


def _sample_peak(stack, stop: threading.Event, peak: list[int]) -> None:
    while not stop.is_set():
        peak[0] = max(peak[0], pss_kib(stack.pids()))
        time.sleep(0.2)


def _load(stack) -> None:
    from runs.sdk import Experiment, Workspace

    studio = Studio(stack.url, stack.token, stack.workspace)
    studio.experiment("memory")
    sha = studio.upload_snapshot({"ticker.py": TICKER})
    runs = [
        studio.ok(
            "POST",
            f"workspaces/{stack.workspace}/experiments/memory/submit/",
            json={"snapshot": sha, "script": "ticker.py"},
        )["run_id"]
        for _ in range(3)
    ]
    ws = Workspace.from_config(str(stack.data_dir / "config.json"))
    run = Experiment(ws, "memory").start_logging()
    for i in range(100_000):
        run.log("loss", 1.0 / (i + 1))
    run.complete()
    for run_id in runs:
        studio.wait_status(run_id, {"Completed", "Failed", "Canceled"}, timeout=120)


def main() -> None:
    for database in ("sqlite", "postgres"):
        with studio_stack(database) as stack:
            time.sleep(5)  # let every process finish starting
            idle = pss_kib(stack.pids())
            processes = len(stack.pids())
            stop, peak = threading.Event(), [idle]
            sampler = threading.Thread(target=_sample_peak, args=(stack, stop, peak), daemon=True)
            sampler.start()
            _load(stack)
            stop.set()
            sampler.join()
            print(
                f"{database:8}  processes {processes:2d}  idle PSS {idle / 1024:6.1f} MiB  "
                f"peak under load {peak[0] / 1024:6.1f} MiB  (runner processes of user scripts excluded "
                "only when they have ended)",
                flush=True,
            )


if __name__ == "__main__":
    main()
