"""The runner: supervises one submitted script on a compute host.

    python -m runs.runner RUN_DIR

RUN_DIR/runner/config.json says what to run; RUN_DIR/runner/token holds the
run's scoped token (read once, then deleted). The script runs in RUN_DIR/src in
its own process group. The runner

- ships the script's output (the driver log), its own diagnostic log and, on
  failure, an error log to the studio while the run is active, from local files
  by byte offset, so a retry never stores a byte twice and nothing is lost while
  the studio is unreachable;
- heartbeats, and stops the script's process group on a cancel or fail request
  (SIGUSR1 from the worker's host monitor, or the heartbeat's answer): SIGTERM,
  a grace period, then SIGKILL;
- enforces max_run_duration_seconds;
- uploads ./outputs when the script ends (also on failure and cancel) and
  reports the exit code, which decides the final status.

It needs only the standard library and `requests`: no Django, no database.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import requests

DRIVER_LOG = "azureml-logs/70_driver_log.txt"
DIAGNOSTIC_LOG = "azureml-logs/60_control_log.txt"
ERROR_LOG = "azureml-logs/80_error_log.txt"
SHIP_INTERVAL = 0.2  # how often the shipper looks for new output
# A file written steadily is appended at most once a second (the Logs tab polls once a second);
# a line after a quiet spell still goes within SHIP_INTERVAL. Appending every 0.2 s, 50 chatty
# runs cost a 2-core studio 250 requests/s.
SHIP_GAP = 1.0
HEARTBEAT_INTERVAL = 1.0  # until the studio's first answer says how often (heartbeat_seconds)
APPEND_MAX = 1024 * 1024
REPORT_DEADLINE = 24 * 3600.0  # keep trying to deliver the final report for a day


class Api:
    """HTTP to the studio with the run token; transient failures are retried with backoff."""

    def __init__(self, url: str, run_id: str, token: str):
        self.base = f"{url.rstrip('/')}/api/runs/{quote(run_id, safe='')}/"
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Token {token}"
        self.said_unreachable = False

    def _say_unreachable(self, exc: Exception) -> None:
        # Once, on the runner's own output (runner.out): the logs cannot be shipped either.
        if not self.said_unreachable:
            self.said_unreachable = True
            print(f"runner: cannot reach the studio at {self.base} ({exc}); retrying", file=sys.stderr, flush=True)

    def request(self, method: str, path: str, **kwargs) -> requests.Response:
        kwargs.setdefault("timeout", 15)
        return self.session.request(method, self.base + path, **kwargs)

    def call(self, method: str, path: str, *, deadline: float, stop: threading.Event | None = None, **kwargs):
        """Retry until a non-transient answer, the deadline, or `stop`. Returns the response or None."""
        delay = 0.2
        while True:
            try:
                response = self.request(method, path, **kwargs)
                if response.status_code < 500 and response.status_code != 429:
                    return response
            except requests.RequestException as exc:
                self._say_unreachable(exc)
            if time.monotonic() + delay > deadline or (stop is not None and stop.is_set()):
                return None
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
            for value in kwargs.get("files", {}).values():
                if hasattr(value, "seek"):
                    value.seek(0)
                elif isinstance(value, tuple) and hasattr(value[1], "seek"):
                    value[1].seek(0)


class LogShipper(threading.Thread):
    """Sends every local log file to the studio by byte offset, in order, until told to stop."""

    def __init__(self, api: Api, files: dict[str, Path], watch_dir: Path | None):
        super().__init__(name="log-shipper", daemon=True)
        self.api, self.files, self.watch_dir = api, dict(files), watch_dir
        self.offsets = dict.fromkeys(files, 0)
        self.sent_at: dict[str, float] = {}
        self.halt = threading.Event()

    def _discover(self) -> None:
        if self.watch_dir is None or not self.watch_dir.is_dir():
            return
        for path in self.watch_dir.rglob("*"):
            if path.is_file() and not path.is_symlink():
                name = "logs/" + path.relative_to(self.watch_dir).as_posix()
                if name not in self.files:
                    self.files[name] = path
                    self.offsets[name] = 0

    def ship_once(self) -> bool:
        """Send what is new; return True when everything is delivered."""
        self._discover()
        done = True
        for name, path in list(self.files.items()):
            try:
                size = path.stat().st_size
            except FileNotFoundError:
                continue
            if not self.halt.is_set() and time.monotonic() - self.sent_at.get(name, float("-inf")) < SHIP_GAP:
                done = done and self.offsets[name] >= size
                continue
            while self.offsets[name] < size:
                with open(path, "rb") as fh:
                    fh.seek(self.offsets[name])
                    data = fh.read(APPEND_MAX)
                if not data:
                    break
                try:
                    response = self.api.request(
                        "POST",
                        "logs/content/",
                        params={"name": name, "offset": self.offsets[name]},
                        data=data,
                        headers={"Content-Type": "application/octet-stream"},
                    )
                except requests.RequestException:
                    return False
                if response.status_code == 200:
                    self.offsets[name] += len(data)
                    self.sent_at[name] = time.monotonic()
                elif response.status_code == 409:
                    self._resync(name)
                else:
                    return False
            done = done and self.offsets[name] >= size
        return done

    def _resync(self, name: str) -> None:
        response = self.api.request("GET", "logs/")
        if response.ok:
            sizes = {item["name"]: item["size"] for item in response.json()}
            self.offsets[name] = sizes.get(name, 0)

    def run(self) -> None:
        while not self.halt.is_set():
            self.ship_once()
            self.halt.wait(SHIP_INTERVAL)

    def finish(self, deadline: float, abandon: threading.Event) -> bool:
        self.halt.set()
        self.join(timeout=5)
        delay = 0.2
        while time.monotonic() < deadline and not abandon.is_set():
            if self.ship_once():
                return True
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
        return False


class Runner:
    def __init__(self, base: Path, config: dict, token: str):
        self.base, self.config, self.token = base, config, token
        self.src, self.meta = base / "src", base / "runner"
        self.run_id = config["run_id"]
        self.api = Api(config["studio_url"], self.run_id, token)
        logs = self.meta / "logs"
        logs.mkdir(exist_ok=True)
        self.driver_log, self.diag_log, self.error_log = (
            logs / "driver.txt",
            logs / "diagnostic.txt",
            logs / "error.txt",
        )
        for path in (self.driver_log, self.diag_log):
            path.touch()
        self.shipper = LogShipper(
            self.api, {DRIVER_LOG: self.driver_log, DIAGNOSTIC_LOG: self.diag_log}, self.src / "logs"
        )
        self.stop_kind = ""  # "cancel", "fail", "timeout", "shutdown", "ended"
        self.stop_grace = float(config.get("cancel_grace_seconds") or 10.0)
        self.stop_requested = threading.Event()
        self.script_done = threading.Event()
        self.abandon = threading.Event()
        self.finished = threading.Event()

    # --- diagnostics ---------------------------------------------------------------------------
    def diag(self, message: str) -> None:
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        with open(self.diag_log, "a", encoding="utf-8") as fh:
            fh.write(f"{stamp} {message}\n")

    # --- stop requests --------------------------------------------------------------------------
    def request_stop(self, kind: str, grace: float | None = None) -> None:
        if self.stop_requested.is_set():
            return
        self.stop_kind = kind
        if grace is not None:
            self.stop_grace = float(grace)
        self.stop_requested.set()

    def _on_sigusr1(self, signum, frame) -> None:
        try:
            order = json.loads((self.meta / "stop.json").read_text())
        except (OSError, ValueError):
            return
        self.request_stop(order.get("stop") or "cancel", order.get("grace_seconds"))

    def _on_sigterm(self, signum, frame) -> None:
        if self.script_done.is_set():
            # Told to stop while only reporting is left (the studio may be gone for good):
            # give up the retries rather than linger.
            self.abandon.set()
        self.request_stop("shutdown")

    def _heartbeats(self) -> None:
        interval = HEARTBEAT_INTERVAL
        while not self.finished.is_set():
            try:
                response = self.api.request("POST", "runner/heartbeat/", timeout=5)
                if response.status_code == 200:
                    order = response.json()
                    if order.get("stop"):
                        self.request_stop(order["stop"], order.get("grace_seconds"))
                    if isinstance(order.get("heartbeat_seconds"), int | float):
                        interval = min(max(float(order["heartbeat_seconds"]), 0.2), 30.0)
                elif response.status_code in (401, 403):
                    # The run ended on the studio's side (its token expired with it).
                    self.request_stop("ended")
            except (requests.RequestException, ValueError):
                pass  # the studio is away; keep the script running and keep trying
            self.finished.wait(interval)

    # --- the script -------------------------------------------------------------------------------
    def command(self) -> list[str]:
        config = self.config
        if config.get("command"):
            command = config["command"]
            text = command if isinstance(command, str) else " ".join(command)
            return ["/bin/sh", "-c", text]
        return [config.get("python") or sys.executable, "-u", config["script"], *config.get("arguments", [])]

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(self.config.get("environment_variables") or {})
        env.update(
            {
                "STUDIO_URL": self.config["studio_url"],
                "STUDIO_RUN_ID": self.run_id,
                "STUDIO_RUN_TOKEN": self.token,
                "STUDIO_WORKSPACE": self.config.get("workspace", ""),
                "STUDIO_EXPERIMENT": self.config.get("experiment", ""),
                "AZUREML_RUN_ID": self.run_id,
                "AZUREML_ARM_WORKSPACE_NAME": self.config.get("workspace", ""),
                "AZUREML_ARM_PROJECT_NAME": self.config.get("experiment", ""),
                "PYTHONUNBUFFERED": "1",
            }
        )
        return env

    def _copy_output(self, stream) -> None:
        with open(self.driver_log, "ab", buffering=0) as out:
            fd = stream.fileno()
            while block := os.read(fd, 65536):
                out.write(block)

    def _killpg(self, pgid: int, sig: signal.Signals) -> bool:
        try:
            os.killpg(pgid, sig)
            return True
        except ProcessLookupError:
            return False

    def supervise(self, proc: subprocess.Popen) -> tuple[int | None, bool]:
        """Wait for the script, stopping it on request or timeout. Returns (returncode, timed_out)."""
        started = time.monotonic()
        max_duration = self.config.get("max_run_duration_seconds")
        term_sent_at = None
        killed = False
        timed_out = False
        while proc.poll() is None:
            if max_duration and not self.stop_requested.is_set() and time.monotonic() - started > max_duration:
                timed_out = True
                self.request_stop("timeout")
            if self.stop_requested.is_set() and term_sent_at is None:
                self.diag(
                    f"stop requested ({self.stop_kind}): SIGTERM to process group {proc.pid}; "
                    f"SIGKILL after {self.stop_grace:g} s"
                )
                self._killpg(proc.pid, signal.SIGTERM)
                term_sent_at = time.monotonic()
            if term_sent_at is not None and not killed and time.monotonic() - term_sent_at >= self.stop_grace:
                self.diag(f"grace period over: SIGKILL to process group {proc.pid}")
                self._killpg(proc.pid, signal.SIGKILL)
                killed = True
            time.sleep(0.05)
        # Whatever the script left behind in its group must not outlive the run.
        if self._killpg(proc.pid, signal.SIGKILL):
            self.diag(f"stopped processes the script left running in group {proc.pid}")
        return proc.returncode, timed_out

    # --- after the script -------------------------------------------------------------------------
    def upload_outputs(self, deadline: float) -> int:
        outputs = self.src / "outputs"
        count = 0
        for root, _dirs, names in os.walk(outputs, followlinks=False):
            for name in sorted(names):
                path = Path(root) / name
                if path.is_symlink() or not path.is_file():
                    continue
                rel = "outputs/" + path.relative_to(outputs).as_posix()
                with open(path, "rb") as fh:
                    response = self.api.call(
                        "POST",
                        "files/",
                        deadline=deadline,
                        stop=self.abandon,
                        files={"file": (name, fh)},
                        data={"name": rel, "origin": "outputs"},
                        timeout=300,
                    )
                if response is not None and response.status_code in (201, 409):
                    count += 1
                else:
                    detail = response.text[:200] if response is not None else "studio unreachable"
                    self.diag(f"could not upload {rel}: {detail}")
        return count

    def log_tail(self, lines: int = 40, limit: int = 4000) -> str:
        try:
            with open(self.driver_log, "rb") as fh:
                fh.seek(max(0, fh.seek(0, os.SEEK_END) - limit * 2))
                text = fh.read().decode("utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])[-limit:]

    def run(self) -> int:
        signal.signal(signal.SIGUSR1, self._on_sigusr1)
        signal.signal(signal.SIGTERM, self._on_sigterm)
        signal.signal(signal.SIGINT, self._on_sigterm)
        host = self.config.get("host") or socket.gethostname()
        self.diag(f"runner pid {os.getpid()} on host {host}; python {sys.version.split()[0]}")
        self.diag(f"working copy: {self.src}")
        self.shipper.start()
        threading.Thread(target=self._heartbeats, name="heartbeats", daemon=True).start()
        if (self.meta / "stop.json").exists():
            self._on_sigusr1(None, None)
        command = self.command()
        shown = command[2] if command[0] == "/bin/sh" else " ".join(command[1:])
        exit_code, reason, timed_out = None, "", False
        try:
            proc = subprocess.Popen(
                command,
                cwd=self.src,
                env=self.environment(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as exc:
            reason = f"could not start the script: {exc}"
            self.diag(reason)
            proc = None
        if proc is not None:
            (self.meta / "script.pgid").write_text(str(proc.pid))
            self.diag(f"script started: pid {proc.pid}: {shown}")
            started = {"pid": proc.pid, "runner_pid": os.getpid()}
            self.api.call("POST", "runner/started/", json=started, deadline=time.monotonic() + 30)
            reader = threading.Thread(target=self._copy_output, args=(proc.stdout,), daemon=True)
            reader.start()
            returncode, timed_out = self.supervise(proc)
            reader.join(timeout=10)
            if returncode is not None and returncode < 0:
                signame = signal.Signals(-returncode).name
                exit_code = 128 - returncode
                reason = f"killed by {signame}"
            else:
                exit_code = returncode
            if self.stop_kind == "shutdown":
                reason = f"{reason}; stopped because the studio on host {host} shut down".lstrip("; ")
            elif self.stop_kind == "ended":
                reason = f"{reason}; the studio had already ended this run".lstrip("; ")
            self.diag(f"script exited with code {exit_code}" + (f" ({reason})" if reason else ""))
        self.script_done.set()
        deadline = time.monotonic() + REPORT_DEADLINE
        self.api.call("POST", "runner/finalizing/", deadline=deadline, stop=self.abandon)
        uploaded = self.upload_outputs(deadline)
        self.diag(f"uploaded {uploaded} output file(s)")
        tail = self.log_tail()
        if exit_code != 0 or timed_out:
            with open(self.error_log, "w", encoding="utf-8") as fh:
                fh.write(f"exit code: {exit_code}\n{reason}\n\n--- last lines of the driver log ---\n{tail}\n")
            self.shipper.files[ERROR_LOG] = self.error_log
            self.shipper.offsets[ERROR_LOG] = 0
        self.shipper.finish(deadline, self.abandon)
        report = {"exit_code": exit_code, "reason": reason, "log_tail": tail, "timed_out": timed_out}
        response = self.api.call("POST", "runner/exit/", json=report, deadline=deadline, stop=self.abandon)
        self.finished.set()
        if response is None or response.status_code >= 400:
            detail = response.text[:300] if response is not None else "studio unreachable"
            self.diag(f"final report not accepted: {detail}")
            return 1
        return 0


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m runs.runner RUN_DIR", file=sys.stderr)
        return 2
    base = Path(argv[1]).resolve()
    config = json.loads((base / "runner" / "config.json").read_text())
    token_file = base / "runner" / "token"
    token = token_file.read_text().strip()
    token_file.unlink()
    code = Runner(base, config, token).run()
    if code == 0 and not os.environ.get("STUDIO_KEEP_WORKDIRS"):
        import shutil

        shutil.rmtree(base / "src", ignore_errors=True)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv))
