"""Helpers for end-to-end tests and benchmarks that talk to a real studio over HTTP."""

from __future__ import annotations

import io
import os
import time
import zipfile

import requests

TERMINAL = {"Completed", "Failed", "Canceled"}


class Studio:
    """A tiny HTTP client for tests (the SDK is tested on its own)."""

    def __init__(self, url: str, key: str, workspace: str = "team-a"):
        self.url, self.workspace = url.rstrip("/"), workspace
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Token {key}"

    def api(self, method: str, path: str, **kwargs) -> requests.Response:
        kwargs.setdefault("timeout", 30)
        return self.session.request(method, f"{self.url}/api/{path.lstrip('/')}", **kwargs)

    def ok(self, method: str, path: str, **kwargs):
        response = self.api(method, path, **kwargs)
        assert response.ok, f"{method} {path} -> {response.status_code}: {response.text[:500]}"
        return response.json() if response.content and "json" in response.headers.get("Content-Type", "") else response

    def experiment(self, name: str) -> str:
        self.ok("POST", f"workspaces/{self.workspace}/experiments/", json={"name": name})
        return name

    def upload_snapshot(self, files: dict[str, str | bytes]) -> str:
        body = make_zip(files)
        response = self.api(
            "POST", f"workspaces/{self.workspace}/snapshots/", data=body, headers={"Content-Type": "application/zip"}
        )
        assert response.status_code == 201, response.text
        return response.json()["sha256"]

    def submit(self, experiment: str, files: dict[str, str | bytes], script: str, **fields) -> str:
        sha = self.upload_snapshot(files)
        run = self.ok(
            "POST",
            f"workspaces/{self.workspace}/experiments/{experiment}/submit/",
            json={"snapshot": sha, "script": script, **fields},
        )
        return run["run_id"]

    def run(self, run_id: str) -> dict:
        return self.ok("GET", f"runs/{run_id}/")

    def status(self, run_id: str) -> str:
        return self.run(run_id)["status"]

    def wait_status(self, run_id: str, wanted: set[str] | str, timeout: float = 60.0) -> dict:
        wanted = {wanted} if isinstance(wanted, str) else wanted
        deadline = time.monotonic() + timeout
        while True:
            run = self.run(run_id)
            if run["status"] in wanted:
                return run
            if time.monotonic() > deadline:
                events = [(e["to_status"], e["reason"]) for e in self.events(run_id)]
                raise AssertionError(
                    f"run {run_id} is {run['status']}, not {wanted}, after {timeout} s; events: {events}; "
                    f"error: {run.get('error')}"
                )
            time.sleep(0.1)

    def log(self, run_id: str, name: str = "azureml-logs/70_driver_log.txt", offset: int = 0) -> bytes:
        response = self.api("GET", f"runs/{run_id}/logs/content/", params={"name": name, "offset": offset})
        return response.content if response.status_code == 200 else b""

    def whole_log(self, run_id: str, name: str = "azureml-logs/70_driver_log.txt") -> bytes:
        """The whole stored log, read in the API's pages (1 MiB each)."""
        data = b""
        while chunk := self.log(run_id, name, offset=len(data)):
            data += chunk
        return data

    def events(self, run_id: str) -> list[dict]:
        return self.ok("GET", f"runs/{run_id}/events/")


def make_zip(files: dict[str, str | bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in files.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is gone for our purposes
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def group_alive(pgid: int) -> bool:
    """Does any live (non-zombie) process remain in this process group?"""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


HELLO_WITH_DELAY = """\
import time
for i in range(300):
    print(f"line {i}", flush=True)
    time.sleep(1)
"""


def reap_runners(work_dir, timeout: float = 15.0) -> int:
    """Stop every runner (and its script) working under `work_dir`; tests leave no process behind."""
    import signal

    marker = f"runs.runner {work_dir}"
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                cmdline = fh.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in cmdline:
            found.append(int(entry))
    for pid in found:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(pid_alive(p) for p in found):
        time.sleep(0.1)
    for pid in found:
        if pid_alive(pid):
            os.kill(pid, signal.SIGKILL)
    return len(found)
