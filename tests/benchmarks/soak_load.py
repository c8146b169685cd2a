"""Load (issue 6): many concurrent runs logging metrics and streaming logs while browsers watch.

    python -m tests.benchmarks --soak --only load      # 50 runs x 5 min, SQLite then PostgreSQL

Against a real `manage.py up` (tests/stack.py: gunicorn with 2 processes x 8 threads, one
Celery worker with the poller) on SQLite + the embedded broker, then PostgreSQL + Redis.

How the runs are simulated: they are not simulated. Each is a real submitted run — the worker
dispatches it, a real runner supervises the script and ships its output, and the script logs
through the real SDK (`Run.get_context()`, `run.log`), 10 metrics x 10 steps a second (100
points/s) and one ~100-byte line per step (a line per 100 ms). So 50 runs are 100 client
processes (50 runners, 50 scripts) on the same 2 cores as the studio: the clients' CPU is
measured and printed beside the server's, since on a real deployment it would be spent on
other hosts. Browsers are threads with their own sessions that do what the pages' htmx does:
the experiment table's live poll every 2 s, a run's Logs tab (log tail every 1 s and header
every 2 s), each following the poll address the previous answer set.

Figures:
- latency per endpoint kind, p50/p99: metric batches as the SDK saw them (a requests hook
  in each script: time to the answer's headers), page polls as the browsers saw them, and
  every kind as the server measured it (gunicorn's access log: from the request read to the
  answer written, which leaves out time waiting for a free thread). The runner's log appends
  have only the server's figure (the runner is not instrumented);
- points and log bytes stored vs sent, lost and duplicated, checked value by value and byte
  by byte against what the scripts logged;
- server CPU (web, workers, supervisor; plus PostgreSQL or Redis processes) as % of the
  machine, and the PSS of the server's process tree.
"""

from __future__ import annotations

import contextlib
import html
import os
import re
import shlex
import statistics
import threading
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from tests.benchmarks.util import percentile, pss_kib
from tests.e2e import Studio

LOAD_SCRIPT = """\
import json, logging, os, sys, time
if len(sys.argv) > 6:  # the SDK's batching delay, for comparisons (0: send as soon as possible)
    os.environ["STUDIO_METRICS_LINGER_SECONDS"] = sys.argv[6]
from runs.sdk import Run
from runs.sdk._sender import sender

# The SDK's warnings go to a file so the driver log is exactly what the loop printed.
sdk_log = logging.getLogger("runs.sdk")
sdk_log.addHandler(logging.FileHandler("outputs/sdk.log"))
sdk_log.propagate = False
tag, steps, every, metrics = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
start_at = float(sys.argv[5])  # every run starts logging at once, whenever it was dispatched
run = Run.get_context()
latencies = []

def timed(response, *args, **kwargs):
    if response.request.method == "POST" and response.request.path_url.endswith("/metrics/"):
        latencies.append([round(time.time(), 3), response.elapsed.total_seconds(), response.status_code])

client = run._client
sender()._client(client.base_url, client.token).session.hooks["response"].append(timed)
waited = start_at - time.time()
if waited > 0:
    time.sleep(waited)
started = time.monotonic()
next_at = started
late = 0.0
for step in range(steps):
    for m in range(metrics):
        run.log(f"m{m}", step)
    print(f"{tag} step {step:07d} " + "." * 70, flush=True)
    next_at += every
    pause = next_at - time.monotonic()
    if pause > 0:
        time.sleep(pause)
    else:
        late = max(late, -pause)
logged_for = time.monotonic() - started
run.flush()
s = sender()
with open("outputs/load.json", "w") as fh:
    json.dump({"logged_for": logged_for, "late_max": late, "start_late": max(0.0, -waited),
               "sent_points": s.sent_points, "sent_batches": s.sent_batches, "duplicate_batches": s.duplicate_batches,
               "dropped": s.dropped_full, "latencies": latencies}, fh)
"""


def expected_log(tag: str, steps: int) -> bytes:
    return "".join(f"{tag} step {step:07d} " + "." * 70 + "\n" for step in range(steps)).encode()


# --- the server's processes and their CPU --------------------------------------------------------------


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _process_tree(root: int) -> tuple[list[int], list[int]]:
    """(studio processes, run processes) under `root`, by parent pid over all of /proc.

    (A worker starts runners from its pool threads, so /proc/<pid>/task/<pid>/children, which
    lists only the main thread's children, would miss them.) Run processes are the runners and
    everything under them (the scripts); the studio is the rest: supervisor, gunicorn, workers.
    """
    children: dict[int, list[int]] = defaultdict(list)
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            parent = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children[parent].append(int(entry))
    studio, runs, frontier = [], [], [(root, False)]
    while frontier:
        pid, under_runner = frontier.pop()
        under_runner = under_runner or b"runs.runner" in _cmdline(pid)
        (runs if under_runner else studio).append(pid)
        frontier += [(child, under_runner) for child in children.get(pid, [])]
    return studio, runs


def server_pids(stack) -> list[int]:
    return _process_tree(stack.proc.pid)[0]


def client_pids(stack) -> list[int]:
    return _process_tree(stack.proc.pid)[1]


def service_pids(database: str) -> list[int]:
    """PostgreSQL's or Redis's processes (shared with anything else using them on this host)."""
    if database != "postgres":
        return []
    names = (b"postgres", b"redis-server")
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                comm = Path(f"/proc/{entry}/comm").read_bytes().strip()
            except OSError:
                continue
            if any(comm.startswith(n) for n in names):
                found.append(int(entry))
    return found


# --- browsers ----------------------------------------------------------------------------------------


POLLER = re.compile(r'id="(table-poller|log-poller|run-header)"[^>]*?hx-get="([^"]+)"')


def _pollers(text: str) -> dict[str, str]:
    return {name: html.unescape(url) for name, url in POLLER.findall(text)}


def login(url: str, username: str, password: str) -> requests.Session:
    session = requests.Session()
    session.get(f"{url}/accounts/login/", timeout=30)
    response = session.post(
        f"{url}/accounts/login/",
        data={"username": username, "password": password, "csrfmiddlewaretoken": session.cookies["csrftoken"]},
        headers={"Referer": f"{url}/accounts/login/"},
        timeout=30,
    )
    response.raise_for_status()
    return session


class Browser(threading.Thread):
    """One open page polling as htmx would: each poller on its own period, following the URLs swapped in."""

    def __init__(self, url: str, cookies, page: str, stop: threading.Event, stats: dict, lock: threading.Lock):
        super().__init__(daemon=True)
        self.url, self.page, self.stop, self.stats, self.lock = url, page, stop, stats, lock
        self.session = requests.Session()
        self.session.cookies.update(cookies)
        self.log_bytes = 0

    def get(self, kind: str, path: str, **kwargs) -> requests.Response | None:
        started, at = time.perf_counter(), time.time()
        try:
            try:
                response = self.session.get(f"{self.url}{path}", timeout=60, **kwargs)
            except requests.ConnectionError:
                # The server closed the idle keep-alive connection as it was reused (gunicorn's
                # keep-alive is 2 s, the pollers' period 1-2 s); a browser retries at once too.
                response = self.session.get(f"{self.url}{path}", timeout=60, **kwargs)
        except requests.RequestException:
            with self.lock:
                self.stats["errors"] += 1
            return None
        with self.lock:
            self.stats["latencies"].append((at, (time.perf_counter() - started) * 1000))
            codes = self.stats["codes"].setdefault(kind, {})
            codes[response.status_code] = codes.get(response.status_code, 0) + 1
        return response

    def run(self) -> None:
        page = self.session.get(f"{self.url}{self.page}", timeout=60)
        pollers = _pollers(page.text)
        periods = {"table-poller": 2.0, "run-header": 2.0, "log-poller": 1.0}
        due = {name: time.monotonic() + periods[name] for name in pollers}
        while not self.stop.is_set() and due:
            name = min(due, key=due.get)
            self.stop.wait(max(0.0, due[name] - time.monotonic()))
            if self.stop.is_set():
                return
            response = self.get(name, pollers[name], headers={"HX-Request": "true"})
            due[name] += periods[name]
            if response is None or response.status_code != 200:
                if response is not None and response.status_code == 286:  # htmx: stop polling
                    del due[name]
                continue
            swapped = _pollers(response.text)
            if name == "log-poller":
                self.log_bytes += len(response.content)
            if name in swapped:
                pollers[name] = swapped[name]
            elif name != "run-header":
                del due[name]  # the answer removed this poller (the run ended)


# --- the access log ------------------------------------------------------------------------------------


def access_log_kinds(path: Path, since: float, until: float) -> dict:
    """Server-side request times (ms) and answers by kind.

    From access log lines '<epoch> <method> <path> <status> <seconds>'.
    """
    kinds: dict[str, list[float]] = defaultdict(list)
    codes: dict[str, dict[int, int]] = defaultdict(dict)
    for line in path.read_text(errors="replace").splitlines():
        parts = line.split()
        if len(parts) != 5:
            continue
        epoch, method, url, status, seconds = parts
        try:
            if not since <= float(epoch) <= until:
                continue
            ms = float(seconds) * 1000
        except ValueError:
            continue
        kind = _kind(method, url)
        kinds[kind].append(ms)
        codes[kind][int(status)] = codes[kind].get(int(status), 0) + 1
    return {"times": kinds, "codes": codes}


def _kind(method: str, url: str) -> str:
    if method == "POST" and url.endswith("/metrics/"):
        return "metric batch"
    if method == "POST" and url.endswith("/logs/content/"):
        return "log append"
    if url.endswith("/runner/heartbeat/"):
        return "runner heartbeat"
    if url.endswith(("/live/", "/logs/tail/")):
        return "page poll"
    return "other"


def _pct(values: list[float]) -> str:
    if not values:
        return "n=0"
    return (
        f"n={len(values):>7,}  p50 {statistics.median(values):7.1f} ms  p99 {percentile(values, 99):7.1f} ms  "
        f"max {max(values):7.1f} ms"
    )


# --- the run -------------------------------------------------------------------------------------------


def measure(
    database: str,
    *,
    runs: int,
    seconds: float,
    browsers: int,
    metrics: int = 10,
    every: float = 0.1,
    linger: float | None = None,
) -> dict:
    """Start a studio, run the load, print the figures; returns them. `linger` overrides the SDK's."""
    from tests.stack import studio_stack

    data = Path(f"/tmp/studio-load-{os.getpid()}")
    data.mkdir(exist_ok=True)
    access = data / f"access-{database}.log"
    access.unlink(missing_ok=True)
    log_format = shlex.quote("%(t)s %(m)s %(U)s %(s)s %(L)s")
    env = {"GUNICORN_CMD_ARGS": f"--access-logfile={access} --access-logformat={log_format}"}
    try:
        with studio_stack(database, extra_env=env, timeout=120) as stack:
            return _measure(stack, database, runs, int(seconds / every), every, metrics, browsers, access, linger)
    finally:
        access.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            data.rmdir()


def _epoch_access_log(path: Path) -> None:
    """gunicorn's %(t)s is '[28/Nov/2026:04:58:29 +0000]': rewrite each line to start with epoch seconds."""
    from datetime import datetime

    out = []
    for line in path.read_text(errors="replace").splitlines():
        match = re.match(r"\[([^\]]+)\] (.*)", line)
        if match:
            at = datetime.strptime(match.group(1), "%d/%b/%Y:%H:%M:%S %z").timestamp()
            out.append(f"{at} {match.group(2)}")
    path.write_text("\n".join(out) + "\n")


def _machine_busy_seconds() -> float:
    """CPU seconds the whole machine spent busy (all processes, all cores), from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU seconds a changing set of processes spent since the meter started.

    Sampled every few seconds: a process that appears later (a database connection opened
    again) counts from its start, one that ends counts up to its last sample.
    """

    def __init__(self, list_pids):
        self.list_pids, self.started = list_pids, time.time()
        self.base: dict[int, float] = {}
        self.last: dict[int, float] = {}
        self.sample()

    def sample(self) -> None:
        stat = Path("/proc/stat").read_text().splitlines()
        boot = next(float(line.split()[1]) for line in stat if line.startswith("btime"))
        ticks = os.sysconf("SC_CLK_TCK")
        for pid in self.list_pids():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            cpu = (int(fields[11]) + int(fields[12])) / ticks
            if pid not in self.base:
                self.base[pid] = 0.0 if boot + int(fields[19]) / ticks > self.started else cpu
            self.last[pid] = cpu

    def seconds(self) -> float:
        self.sample()
        return sum(self.last[pid] - self.base[pid] for pid in self.last)


def _measure(stack, database, runs, steps, every, metrics, browsers, access, linger) -> dict:
    studio = Studio(stack.url, stack.token, stack.workspace)
    studio.ok("PATCH", f"workspaces/{stack.workspace}/computes/local/", json={"max_concurrent_runs": runs + 5})
    experiment = studio.experiment("load")
    username, password = re.search(r"admin user: (\S+)\s+password: (\S+)", stack.log_path.read_text()).groups()
    sha = studio.upload_snapshot({"load.py": LOAD_SCRIPT})
    # Every run starts logging at the same moment, once all are dispatched, so the steady
    # window has all of them logging (a dispatch of 50 runs on 2 cores takes tens of seconds).
    start_at = time.time() + 15 + 0.8 * runs
    seconds = steps * every
    tags = [f"load-{i:02d}" for i in range(runs)]
    submitted = {}
    for tag in tags:
        submitted[tag] = studio.ok(
            "POST",
            f"workspaces/{stack.workspace}/experiments/{experiment}/submit/",
            json={
                "snapshot": sha,
                "script": "load.py",
                "arguments": [tag, steps, every, metrics, start_at] + ([linger] if linger is not None else []),
                "display_name": tag,
            },
        )["run_id"]
    session = login(stack.url, username, password)
    stop = threading.Event()
    stats = {"latencies": [], "codes": {}, "errors": 0}
    lock = threading.Lock()
    pages = [
        f"/w/{stack.workspace}/experiments/{experiment}/"
        if i % 2 == 0
        else f"/runs/{submitted[tags[(i // 2) % runs]]}/logs/"
        for i in range(browsers)
    ]
    _sleep_until(start_at - 3)
    watchers = [Browser(stack.url, session.cookies, page, stop, stats, lock) for page in pages]
    for browser in watchers:
        browser.start()
        time.sleep(2.0 / max(1, browsers))  # pages opened at different moments
    running_at_start = sum(studio.status(r) == "Running" for r in submitted.values())
    # The steady window: all runs logging, browsers polling.
    window = (start_at + 5, start_at + seconds - 2)
    _sleep_until(window[0])
    meters = {
        "studio": CpuMeter(lambda: _process_tree(stack.proc.pid)[0]),
        "runs": CpuMeter(lambda: _process_tree(stack.proc.pid)[1]),
        "services": CpuMeter(lambda: service_pids(database)),
        "harness": CpuMeter(lambda: [os.getpid()]),
    }
    machine_before = _machine_busy_seconds()
    pss_peak = 0
    while time.time() < window[1]:
        pss_peak = max(pss_peak, pss_kib(_process_tree(stack.proc.pid)[0]))
        for meter in meters.values():
            meter.sample()
        time.sleep(min(2.0, max(0.0, window[1] - time.time())))
    cpu = {name: meter.seconds() / (window[1] - window[0]) for name, meter in meters.items()}
    cpu["machine"] = (_machine_busy_seconds() - machine_before) / (window[1] - window[0])
    cpu["seconds"] = window[1] - window[0]
    load = os.getloadavg()[0]
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        statuses = [studio.status(r) for r in submitted.values()]
        if all(s in ("Completed", "Failed", "Canceled") for s in statuses):
            break
        time.sleep(1.0)
    stop.set()
    for browser in watchers:
        browser.join(timeout=30)
    with ThreadPoolExecutor(8) as pool:
        accounts = list(pool.map(lambda tag: _account(studio, submitted[tag], tag, steps, metrics), tags))
    _epoch_access_log(access)
    server_side = access_log_kinds(access, *window)
    inside = lambda at: window[0] <= at <= window[1]  # noqa: E731
    result = {
        "database": database,
        "linger": linger,
        "runs": runs,
        "steps": steps,
        "running_at_start": running_at_start,
        "statuses": {s: statuses.count(s) for s in set(statuses)},
        "sdk_metric_ms": [lat * 1000 for a in accounts for at, lat, _code in a.pop("latencies") if inside(at)],
        "page_ms": [ms for at, ms in stats["latencies"] if inside(at)],
        "page_codes": stats["codes"],
        "page_errors": stats["errors"],
        "server_ms": server_side["times"],
        "server_codes": server_side["codes"],
        "cpu": cpu,
        "load_average": load,
        "pss_peak_mib": pss_peak / 1024,
        "browser_log_bytes": sum(b.log_bytes for b in watchers),
    }
    for key in ("points_sent", "points_stored", "points_lost", "points_duplicated", "bytes_sent", "bytes_stored"):
        result[key] = sum(a[key] for a in accounts)
    result["logs_identical"] = sum(a["log_identical"] for a in accounts)
    result["duplicate_batches"] = sum(a["duplicate_batches"] for a in accounts)
    result["sdk_batches"] = sum(a["sent_batches"] for a in accounts)
    result["late_max"] = max(a["late_max"] for a in accounts)
    result["start_late_max"] = max(a["start_late"] for a in accounts)
    result["logged_for_max"] = max(a["logged_for"] for a in accounts)
    report(result)
    return result


def _sleep_until(at: float) -> None:
    time.sleep(max(0.0, at - time.time()))


def _account(studio: Studio, run_id: str, tag: str, steps: int, metrics: int) -> dict:
    stored_points, lost, duplicated = 0, 0, 0
    for m in range(metrics):
        values = studio.ok("GET", f"runs/{run_id}/metrics/points/", params={"name": f"m{m}"})["values"]
        stored_points += len(values)
        lost += len(set(range(steps)) - set(values))
        duplicated += len(values) - len(set(values))
    log = studio.whole_log(run_id)
    want = expected_log(tag, steps)
    summary = {}
    response = studio.api("GET", f"runs/{run_id}/files/content/", params={"name": "outputs/load.json"})
    if response.status_code == 200:
        summary = response.json()
    return {
        "points_sent": steps * metrics,
        "points_stored": stored_points,
        "points_lost": lost,
        "points_duplicated": duplicated,
        "bytes_sent": len(want),
        "bytes_stored": len(log),
        "log_identical": log == want,
        "duplicate_batches": summary.get("duplicate_batches", 0),
        "sent_batches": summary.get("sent_batches", 0),
        "late_max": summary.get("late_max", 0.0),
        "start_late": summary.get("start_late", 0.0),
        "logged_for": summary.get("logged_for", 0.0),
        "latencies": summary.get("latencies", []),
    }


def report(r: dict) -> None:
    cores = os.cpu_count() or 1
    cpu = r["cpu"]
    services = "PostgreSQL (all its databases) + Redis" if r["database"] == "postgres" else "(no database server)"
    print(
        f"\n[{r['database']}] {r['runs']} runs x {r['steps']} steps (10 points + 1 line each, every 100 ms), "
        f"{r['running_at_start']} of them running at the common start; statuses at the end {r['statuses']}"
        + (f"; SDK linger {r['linger']} s" if r["linger"] is not None else ""),
        flush=True,
    )
    print(
        f"  metric points: sent {r['points_sent']:,}, stored {r['points_stored']:,}, lost {r['points_lost']:,}, "
        f"duplicated {r['points_duplicated']:,} (SDK: {r['sdk_batches']:,} batches, {r['duplicate_batches']} "
        f"acknowledged as already stored)"
    )
    print(
        f"  log bytes:     sent {r['bytes_sent']:,}, stored {r['bytes_stored']:,}; identical byte for byte in "
        f"{r['logs_identical']} of {r['runs']} runs; the browsers' log tails received {r['browser_log_bytes']:,} bytes"
    )
    print(
        f"  scripts' pacing: slowest run logged for {r['logged_for_max']:.1f} s (planned {r['steps'] * 0.1:.1f} s), "
        f"worst step late by {r['late_max'] * 1000:.0f} ms, latest start +{r['start_late_max']:.1f} s"
    )
    print(f"  latency in the {cpu['seconds']:.0f} s steady window, as the client saw it:")
    print(f"    metric batch (SDK)       {_pct(r['sdk_metric_ms'])}")
    print(f"    page poll (browsers)     {_pct(r['page_ms'])}   errors {r['page_errors']}")
    print(f"      answers by poller: {r['page_codes']}")
    print("  ... and as the server measured it (gunicorn access log; leaves out waiting for a free thread):")
    for kind in ("metric batch", "log append", "runner heartbeat", "page poll", "other"):
        values = r["server_ms"].get(kind, [])
        print(f"    {kind:<24} {_pct(values)}   answers {r['server_codes'].get(kind, {})}")
    others = cpu["machine"] - cpu["studio"] - cpu["services"] - cpu["runs"] - cpu["harness"]
    print(
        f"  CPU in the window, % of the machine ({cores} cores): studio {100 * cpu['studio'] / cores:.0f}%, "
        f"{services} {100 * cpu['services'] / cores:.0f}%, the runs' own processes (runners + scripts) "
        f"{100 * cpu['runs'] / cores:.0f}%, this harness (browsers) {100 * cpu['harness'] / cores:.0f}%, "
        f"everything else on the host {100 * max(0.0, others) / cores:.0f}% "
        f"(machine busy {100 * cpu['machine'] / cores:.0f}%, load average {r['load_average']:.1f})"
    )
    print(f"  studio memory: peak PSS of its process tree (supervisor, gunicorn, worker) {r['pss_peak_mib']:.0f} MiB")


def main() -> None:
    for database in ("sqlite", "postgres"):
        measure(database, runs=50, seconds=300, browsers=20)


if __name__ == "__main__":
    main()
