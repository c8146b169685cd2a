"""Remote execution latencies against a real `manage.py up` (issue 3, acceptance 6).

- submit → Running: from the run's creation to its Running event (server clock), median of 20, idle worker;
- cancel → process group gone: from the cancel request to no live process in the script's group, p95 of 20;
- log line → readable: from a line's print (its own timestamp) to its first read through the API, p95.

Run on SQLite + the embedded broker and on PostgreSQL + Redis.
"""

from __future__ import annotations

import re
import statistics
import time
from datetime import datetime

from tests.benchmarks.util import percentile
from tests.e2e import HELLO_WITH_DELAY, Studio, group_alive
from tests.stack import studio_stack

RUNS = 20
TICKER = (
    "import time\nfor i in range(100000):\n    print(f'line {i} at {time.time()}', flush=True)\n    time.sleep(0.2)\n"
)


def _ts(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def _script_pid(studio: Studio, run_id: str) -> int:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for event in studio.events(run_id):
            if match := re.search(r"script started \(pid (\d+)\)", event["reason"]):
                return int(match.group(1))
        time.sleep(0.01)
    raise RuntimeError(f"run {run_id} never started")


def submit_to_running(studio: Studio) -> list[float]:
    sha = studio.upload_snapshot({"quick.py": "print('hi')\n"})
    latencies = []
    for _ in range(RUNS):
        run = studio.ok(
            "POST",
            f"workspaces/{studio.workspace}/experiments/bench/submit/",
            json={"snapshot": sha, "script": "quick.py"},
        )
        done = studio.wait_status(run["run_id"], {"Completed", "Failed"}, timeout=60)
        running = next(e for e in studio.events(run["run_id"]) if e["to_status"] == "Running")
        latencies.append(_ts(running["at"]) - _ts(done["created_utc"]))
    return latencies


def cancel_to_gone(studio: Studio) -> list[float]:
    sha = studio.upload_snapshot({"hello_with_delay.py": HELLO_WITH_DELAY})
    latencies = []
    for _ in range(RUNS):
        run = studio.ok(
            "POST",
            f"workspaces/{studio.workspace}/experiments/bench/submit/",
            json={"snapshot": sha, "script": "hello_with_delay.py"},
        )
        pid = _script_pid(studio, run["run_id"])
        studio.wait_status(run["run_id"], "Running")
        started = time.monotonic()
        studio.ok("POST", f"runs/{run['run_id']}/cancel/")
        while group_alive(pid):
            time.sleep(0.005)
        latencies.append(time.monotonic() - started)
        studio.wait_status(run["run_id"], "Canceled", timeout=60)
    return latencies


def line_to_readable(studio: Studio, lines: int = 60) -> list[float]:
    sha = studio.upload_snapshot({"ticker.py": TICKER})
    run = studio.ok(
        "POST",
        f"workspaces/{studio.workspace}/experiments/bench/submit/",
        json={"snapshot": sha, "script": "ticker.py"},
    )
    studio.wait_status(run["run_id"], "Running")
    seen: dict[int, float] = {}
    offset, text = 0, ""
    deadline = time.monotonic() + 60
    while len(seen) < lines and time.monotonic() < deadline:
        chunk = studio.log(run["run_id"], offset=offset)
        now = time.time()
        offset += len(chunk)
        text += chunk.decode()
        for number, printed in re.findall(r"line (\d+) at ([\d.]+)\n", text):
            seen.setdefault(int(number), now - float(printed))
        text = text[text.rfind("\n") + 1 :]
        time.sleep(0.02)
    studio.ok("POST", f"runs/{run['run_id']}/cancel/")
    return list(seen.values())


def report(label: str, values: list[float]) -> None:
    ms = [v * 1000 for v in values]
    print(
        f"  {label:<34} n={len(ms):3d}  median {statistics.median(ms):7.1f} ms  "
        f"p95 {percentile(ms, 95):7.1f} ms  max {max(ms):7.1f} ms",
        flush=True,
    )


def main() -> None:
    for database in ("sqlite", "postgres"):
        broker = "embedded broker" if database == "sqlite" else "Redis"
        print(f"{database} + {broker}:", flush=True)
        with studio_stack(database) as stack:
            studio = Studio(stack.url, stack.token, stack.workspace)
            studio.experiment("bench")
            report("submit -> Running", submit_to_running(studio))
            report("cancel -> process group gone", cancel_to_gone(studio))
            report("log line -> readable via API", line_to_readable(studio))


if __name__ == "__main__":
    main()
