"""The process supervisor behind `make run`: standard library only, so it costs ~10 MiB.

`manage.py up` migrates and bootstraps (which needs Django), then execs this
module with a JSON plan of the children to start:

    python -m runs.supervisor '{"children": [{"name": ..., "argv": [...]}, ...], "work_dir": ...}'

It starts each child in its own process group (so Ctrl-C reaches only the
supervisor), restarts a child that exits (at most 5 times a minute), and on
SIGINT/SIGTERM stops everything it started: first the runners working under
`work_dir` (they stop their scripts and report while the web server still
listens), then the workers, then the web server.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

RESTART_WINDOW = 60.0
RESTARTS_PER_WINDOW = 5


class Child:
    def __init__(self, name: str, argv: list[str]):
        self.name, self.argv = name, argv
        self.proc: subprocess.Popen | None = None
        self.restarts: list[float] = []

    def start(self) -> None:
        self.proc = subprocess.Popen(self.argv, process_group=0)

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: int) -> None:
        if self.running():
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass


def runner_pids(work_dir: str) -> list[int]:
    """Runner processes working under work_dir (found by command line, no database needed)."""
    marker = f"runs.runner {work_dir.rstrip('/')}/"
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in cmdline:
            pids.append(int(entry))
    return pids


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


class Supervisor:
    def __init__(self, plan: dict):
        self.children = [Child(c["name"], c["argv"]) for c in plan["children"]]
        self.work_dir = plan["work_dir"]
        self.runner_grace = float(plan.get("runner_grace_seconds", 40.0))
        self.stopping = False

    def _on_signal(self, signum, frame) -> None:
        self.stopping = True

    def run(self) -> int:
        signal.signal(signal.SIGINT, self._on_signal)
        signal.signal(signal.SIGTERM, self._on_signal)
        for child in self.children:
            child.start()
        code = 0
        try:
            code = self._watch()
        finally:
            self._shutdown()
        return code

    def _watch(self) -> int:
        while not self.stopping:
            for child in self.children:
                if child.running() or self.stopping:
                    continue
                now = time.monotonic()
                child.restarts = [t for t in child.restarts if now - t < RESTART_WINDOW]
                if len(child.restarts) >= RESTARTS_PER_WINDOW:
                    print(f"{child.name} keeps exiting (code {child.proc.returncode}); stopping", file=sys.stderr)
                    return 1
                print(f"{child.name} exited with code {child.proc.returncode}; restarting it", file=sys.stderr)
                child.restarts.append(now)
                child.start()
            time.sleep(0.5)
        return 0

    def _shutdown(self) -> None:
        print("Stopping: runs on this host first, then workers and the web server...", flush=True)
        runners = [pid for pid in runner_pids(self.work_dir) if _alive(pid)]
        for pid in runners:
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + self.runner_grace
        while time.monotonic() < deadline and any(_alive(pid) for pid in runners):
            time.sleep(0.2)
        for pid in runners:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        web = [c for c in self.children if c.name == "web"]
        workers = [c for c in self.children if c.name != "web"]
        for group in (workers, web):
            for child in group:
                child.signal(signal.SIGTERM)
            deadline = time.monotonic() + 15.0
            while time.monotonic() < deadline and any(c.running() for c in group):
                time.sleep(0.1)
            for child in group:
                child.signal(signal.SIGKILL)
        print("Stopped.", flush=True)


if __name__ == "__main__":
    sys.exit(Supervisor(json.loads(sys.argv[1])).run())
