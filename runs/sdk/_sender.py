"""The one background thread per process that delivers metrics and heartbeats.

A training loop never waits for the network: `Run.log*` appends a point to
an in-process buffer (a lock, three list appends) and returns. The sender
thread takes the buffered points of each run in batches (up to
STUDIO_METRICS_BATCH_POINTS points, default 20,000; at most 1,000 series and
about 16 MB of JSON) and POSTs them to /api/runs/{id}/metrics/ in the wire
format of runs.services.metrics.metrics_ingest. A run's points are sent once
the oldest has waited STUDIO_METRICS_LINGER_SECONDS (default 1 s), or a batch
is full, or a flush asks for them: a loop logging steadily sends about one
request a second, not one per point (50 runs logging 100 points/s each made
~1,000 requests/s and saturated a 2-core studio; now ~50).

    {"batch_id": uuid, "series": [{"name", "kind", "values", "times", "steps"?, "description"?}]}

Delivery guarantees:

- Exactly once. The studio stores a batch_id once. After any failure
  (connection refused, reset, timeout, 5xx, 429) the *same* batch, with the
  same batch_id and bytes, is retried with exponential backoff capped at 5 s,
  for as long as the process lives. A batch the studio stored but whose answer
  was lost is acknowledged as a duplicate on retry, so no point is stored twice.
- In order. A run's next batch is built only after its current one is
  acknowledged, so the points of a series reach the studio in logging order.
- Rejections never block the queue. A batch the studio refuses (400/409/413;
  nothing of it was stored) is split into one batch per series, then halves,
  so only the offending points are dropped, with a warning naming the metric
  and the studio's message. A run that is gone or whose token no longer works
  (401/403/404) drops its points with one warning.
- Bounded memory. At most STUDIO_METRICS_QUEUE_MAX points (default 5,000,000)
  wait in the process. When the queue is full, NEW points are dropped and
  counted, with a warning at most once a minute; queued points are kept and
  delivered in order once the studio is back.
- Drained at the end. `Run.flush()`, `complete()`, `fail()` wait for their
  run's points; at interpreter exit an atexit hook waits up to
  STUDIO_METRICS_EXIT_TIMEOUT_SECONDS (default 60) for all of them and warns
  about any that could not be delivered.

Heartbeats: interactive runs created by this process (start_logging,
child_run, create_children) are registered here and get a POST
/api/runs/{id}/heartbeat/ every STUDIO_HEARTBEAT_INTERVAL_SECONDS (default 30)
while their Run object is alive (held by a weak reference) and until this
process completes, fails or cancels them, or the studio reports them
finished. The heartbeat attests that the process still drives the run, so a
killed notebook (or a Run object dropped without complete()) stops
heartbeating and the studio's poller marks the run NotResponding after its
heartbeat_timeout_seconds (STUDIO_HEARTBEAT_TIMEOUT_SECONDS, default 600),
then Failed.
"""

from __future__ import annotations

import atexit
import logging
import os
import random
import threading
import time
import uuid
import weakref
from array import array
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import requests

from runs.sdk import _json
from runs.sdk._env import env_float, env_int
from runs.sdk._http import HttpClient, connection_reason, q

log = logging.getLogger("runs.sdk")

SERIES_PER_BATCH_MAX = 1000  # the studio's limit (runs.limits.SERIES_PER_BATCH_MAX)
BODY_BYTES_MAX = 16 * 1024 * 1024  # half the studio's default request limit
BACKOFF_FIRST, BACKOFF_MAX = 0.25, 5.0
IDLE_WAIT = 0.05  # how long the idle sender waits for new points before looking again
HEARTBEATS_PER_STEP = 25  # heartbeats sent between two metric batches, so neither starves
_TERMINAL = frozenset({"Completed", "Failed", "Canceled"})
_REJECTED = frozenset({400, 409, 413, 422})
_GONE = frozenset({401, 403, 404})


class _Series:
    """The not-yet-sent points of one (run, metric name, kind)."""

    __slots__ = ("description", "done", "kind", "logged", "name", "steps", "times", "values")

    def __init__(self, name: str, kind: str, description: str) -> None:
        self.name, self.kind, self.description = name, kind, description
        self.values: list = []
        self.times = array("d")
        self.steps: list = []
        self.logged = 0  # points ever added
        self.done = 0  # points acknowledged by the studio or dropped


@dataclass
class _Batch:
    batch_id: str
    parts: list  # [(series, values, times, steps)]
    body: bytes = b""

    @property
    def points(self) -> int:
        return sum(len(p[1]) for p in self.parts)


@dataclass(eq=False)
class Sink:
    """One run's outgoing metrics: its buffers, the batches in flight, its retry state."""

    base_url: str
    token: str
    run_id: str
    series: dict = field(default_factory=dict)  # (name, kind) -> _Series
    buffered: int = 0  # points in the series buffers (not yet in a batch)
    outbox: deque = field(default_factory=deque)  # batches to send, in order
    attempts: int = 0
    next_attempt: float = 0.0
    gone: str = ""  # why the studio will never take this run's points again
    oldest: float = 0.0  # monotonic time the oldest buffered point was added
    last_failure_warning: float = 0.0


@dataclass
class _Beat:
    run: weakref.ref
    run_id: str
    base_url: str
    token: str
    interval: float
    due: float


class Sender:
    """Buffers metric points and heartbeats; one instance (and thread) per process: use `sender()`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._progress = threading.Condition(self._lock)
        self._wake = threading.Event()
        self._sinks: dict[tuple[str, str, str], Sink] = {}
        self._beats: dict[str, _Beat] = {}
        self._clients: dict[tuple[str, str], HttpClient] = {}
        self._queued = 0  # points held (buffers + outboxes)
        self._dropped_full = 0
        self._last_full_warning = 0.0
        self._thread: threading.Thread | None = None
        self._closed = False
        self.queue_max = env_int("STUDIO_METRICS_QUEUE_MAX", 5_000_000, minimum=1)
        self.batch_points = env_int("STUDIO_METRICS_BATCH_POINTS", 20_000, minimum=1)
        self.linger = env_float("STUDIO_METRICS_LINGER_SECONDS", 1.0, minimum=0.0)
        self._flushing = 0  # flushes waiting: while any does, buffered points go at once
        # Counters for tests and benchmarks: batches acknowledged, their points, and how many of
        # them the studio had already stored (a retry after a lost answer).
        self.sent_batches = 0
        self.sent_points = 0
        self.duplicate_batches = 0

    # --- the caller's side ---------------------------------------------------------------------

    def sink(self, base_url: str, token: str, run_id: str) -> Sink:
        """The sink of one run (created on first use); starts the thread if needed."""
        key = (base_url, token, run_id)
        with self._lock:
            sink = self._sinks.get(key)
            if sink is None:
                sink = self._sinks[key] = Sink(base_url, token, run_id)
        self._ensure_thread()
        return sink

    def add(self, sink: Sink, name: str, kind: str, value, when: float, step: int | None, description: str) -> bool:
        """Queue one point. Returns False if it was dropped because the queue is full."""
        with self._lock:
            if self._queued >= self.queue_max:
                self._drop_new_point()
                return False
            series = sink.series.get((name, kind))
            if series is None:
                series = sink.series[(name, kind)] = _Series(name, kind, description)
            series.values.append(value)
            series.times.append(when)
            series.steps.append(step)
            series.logged += 1
            if not sink.buffered:
                sink.oldest = time.monotonic()
            sink.buffered += 1
            self._queued += 1
        return True

    def _drop_new_point(self) -> None:
        # Called with the lock held. Old points are worth more than new ones: they
        # are already in order, and dropping them would leave a hole mid-series.
        self._dropped_full += 1
        now = time.monotonic()
        if now - self._last_full_warning >= 60.0:
            self._last_full_warning = now
            log.warning(
                "the metrics queue is full (%d points waiting for the studio): new points are dropped "
                "(%d so far). Check that the studio is reachable, or raise STUDIO_METRICS_QUEUE_MAX.",
                self.queue_max,
                self._dropped_full,
            )

    @property
    def dropped_full(self) -> int:
        return self._dropped_full

    @property
    def queued(self) -> int:
        return self._queued

    def flush(self, sink: Sink | None = None, timeout: float = 300.0) -> bool:
        """Wait until every point queued so far (for `sink`, or all) is delivered or dropped.

        Returns False if `timeout` seconds passed first; the points stay queued
        and keep being retried in the background.
        """
        with self._lock:
            sinks = [sink] if sink is not None else list(self._sinks.values())
            targets = [(series, series.logged) for s in sinks for series in s.series.values()]
            self._flushing += 1
        self._wake.set()
        deadline = time.monotonic() + max(0.0, timeout)
        with self._progress:
            try:
                while any(series.done < target for series, target in targets):
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return False
                    self._progress.wait(min(remaining, 0.5))
            finally:
                self._flushing -= 1
        return True

    def pending(self, sink: Sink) -> int:
        with self._lock:
            return sum(series.logged - series.done for series in sink.series.values())

    def forget(self, sink: Sink) -> bool:
        """Drop a sink with nothing left to send (its run ended), so a long-lived process does not
        keep iterating over the sinks of finished runs. Returns True if it was dropped; the caller
        must then ask `sink()` again before logging more."""
        with self._lock:
            if any(series.done < series.logged for series in sink.series.values()):
                return False
            self._sinks.pop((sink.base_url, sink.token, sink.run_id), None)
            return True

    # --- heartbeats -----------------------------------------------------------------------------

    def start_heartbeats(self, run: Any) -> None:
        """Heartbeat `run` every interval while the object lives, until `stop_heartbeats(run.id)`."""
        client = run._client
        interval = env_float("STUDIO_HEARTBEAT_INTERVAL_SECONDS", 30.0, minimum=0.1)
        beat = _Beat(weakref.ref(run), run.id, client.base_url, client.token, interval, time.monotonic() + interval)
        with self._lock:
            self._beats[run.id] = beat
        self._ensure_thread()

    def stop_heartbeats(self, run_id: str) -> None:
        with self._lock:
            self._beats.pop(run_id, None)

    def heartbeating(self, run_id: str) -> bool:
        return run_id in self._beats

    # --- the thread --------------------------------------------------------------------------------

    def _ensure_thread(self) -> None:
        if self._closed or (self._thread is not None and self._thread.is_alive()):
            return
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._thread = threading.Thread(target=self._loop, name="studio-metrics-sender", daemon=True)
            self._thread.start()

    def close(self, timeout: float = 5.0) -> None:
        """Stop the thread (queued points are not sent any more). For a sender that is not the process's."""
        self._closed = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _loop(self) -> None:
        while not self._closed:
            try:
                busy = self._step()
            except Exception:  # the sender must outlive any bug; the points stay queued
                log.exception("the studio metrics sender hit an unexpected error; retrying")
                busy = False
                time.sleep(1.0)
            if not busy:
                self._wake.wait(self._idle_wait())
                self._wake.clear()

    def _idle_wait(self) -> float:
        now = time.monotonic()
        waits = [IDLE_WAIT]
        with self._lock:
            waits += [s.next_attempt - now for s in self._sinks.values() if s.outbox]
        return max(0.005, min(waits))

    def _client(self, base_url: str, token: str) -> HttpClient:
        client = self._clients.get((base_url, token))
        if client is None:
            client = self._clients[(base_url, token)] = HttpClient(base_url, token, timeout=(5.0, 120.0))
        return client

    def _step(self) -> bool:
        """Send what is due; return True if a batch was acknowledged (so more may follow at once)."""
        busy = False
        with self._lock:
            sinks = list(self._sinks.values())
        now = time.monotonic()
        for sink in sinks:
            if sink.gone:
                self._discard(sink)
                continue
            if not sink.outbox and sink.buffered and self._due(sink, now):
                self._fill_outbox(sink)
            if sink.outbox and sink.next_attempt <= now:
                busy = self._send(sink) or busy
        self._send_heartbeats()
        return busy

    def _due(self, sink: Sink, now: float) -> bool:
        """Send a run's buffered points now, or let more join them (see the module docstring)?"""
        return self._flushing > 0 or sink.buffered >= self.batch_points or now - sink.oldest >= self.linger

    # --- batches ---------------------------------------------------------------------------------

    def _fill_outbox(self, sink: Sink) -> None:
        parts = []
        room = self.batch_points
        with self._lock:
            for series in sink.series.values():
                if room <= 0 or len(parts) >= SERIES_PER_BATCH_MAX:
                    break
                n = len(series.values)
                if not n:
                    continue
                if n <= room:
                    # Swapping the lists is O(1); the caller appends to the new ones.
                    values, times, steps = series.values, series.times, series.steps
                    series.values, series.times, series.steps = [], array("d"), []
                else:
                    n = room
                    values, times, steps = series.values[:n], series.times[:n], series.steps[:n]
                    del series.values[:n], series.times[:n], series.steps[:n]
                parts.append((series, values, times, steps))
                room -= n
                sink.buffered -= n
        for batch in self._encode(parts):
            sink.outbox.append(batch)

    def _encode(self, parts: list) -> list[_Batch]:
        """Batches for `parts` whose bodies fit the size limit (split in halves as needed)."""
        series_items = []
        for series, values, times, steps in parts:
            item = {"name": series.name, "kind": series.kind, "values": values, "times": times.tolist()}
            if any(s is not None for s in steps):
                item["steps"] = steps
            if series.description:
                item["description"] = series.description
            series_items.append(item)
        batch_id = uuid.uuid4().hex
        body = _json.dumps({"batch_id": batch_id, "series": series_items})
        if len(body) <= BODY_BYTES_MAX:
            return [_Batch(batch_id, parts, body)]
        return [b for half in _halves(parts) for b in self._encode(half)]

    def _send(self, sink: Sink) -> bool:
        batch = sink.outbox[0]
        client = self._client(sink.base_url, sink.token)
        url = client.api_url(f"runs/{q(sink.run_id)}/metrics/")
        try:
            response = client.session.post(
                url, data=batch.body, headers={"Content-Type": "application/json"}, timeout=client.timeout
            )
            status = response.status_code
            detail = _detail(response)
        except requests.RequestException as exc:
            status, detail = None, connection_reason(exc)
        if status == 200:
            sink.outbox.popleft()
            sink.attempts, sink.next_attempt = 0, 0.0
            self.sent_batches += 1
            self.sent_points += batch.points
            if _answer(response).get("duplicate") is True:
                self.duplicate_batches += 1
            self._settle(batch)
            return True
        if status is None or status >= 500 or status in (408, 429):
            self._retry_later(sink, batch, status, detail)
            return False
        sink.outbox.popleft()
        sink.attempts = 0
        if status in _REJECTED:
            # Nothing of a rejected batch was stored, so its parts may go again under new ids.
            smaller = _halves(batch.parts) if len(batch.parts) == 1 else [[part] for part in batch.parts]
            if batch.points > 1 and len(smaller) > 1:
                for replacement in reversed([b for group in smaller for b in self._encode(group)]):
                    sink.outbox.appendleft(replacement)
                return True
            log.warning(
                "the studio refused %d point(s) of metric '%s' of run %s; they are dropped: %s",
                batch.points,
                batch.parts[0][0].name,
                sink.run_id,
                detail,
            )
            self._settle(batch)
            return True
        if status in _GONE:
            sink.gone = f"HTTP {status}: {detail}"
            log.warning(
                "the studio no longer accepts metrics for run %s (%s); its %d queued point(s) are dropped",
                sink.run_id,
                sink.gone,
                self.pending(sink),
            )
            self._settle(batch)
            self._discard(sink)
            return True
        log.warning("the studio answered HTTP %s to a metrics batch of run %s: %s", status, sink.run_id, detail)
        self._settle(batch)
        return True

    def _retry_later(self, sink: Sink, batch: _Batch, status: int | None, detail: str) -> None:
        sink.attempts += 1
        delay = min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** (sink.attempts - 1))
        sink.next_attempt = time.monotonic() + delay * random.uniform(0.8, 1.0)
        now = time.monotonic()
        if now - sink.last_failure_warning >= 60.0:
            sink.last_failure_warning = now
            reason = f"HTTP {status}: {detail}" if status else detail
            log.warning(
                "cannot deliver metrics of run %s to %s (%s); %d point(s) stay queued and are retried",
                sink.run_id,
                sink.base_url,
                reason,
                self.pending(sink),
            )

    def _settle(self, batch: _Batch) -> None:
        with self._progress:
            for series, values, _times, _steps in batch.parts:
                series.done += len(values)
            self._queued -= batch.points
            self._progress.notify_all()

    def _discard(self, sink: Sink) -> None:
        with self._progress:
            dropped = 0
            for series in sink.series.values():
                dropped += len(series.values)
                series.done += len(series.values)
                series.values, series.times, series.steps = [], array("d"), []
            for batch in sink.outbox:
                for series, values, _times, _steps in batch.parts:
                    series.done += len(values)
                dropped += batch.points
            sink.outbox.clear()
            sink.buffered = 0
            self._queued -= dropped
            self._progress.notify_all()

    # --- heartbeats ------------------------------------------------------------------------------

    def _send_heartbeats(self) -> None:
        now = time.monotonic()
        with self._lock:
            for run_id in [b.run_id for b in self._beats.values() if b.run() is None]:
                del self._beats[run_id]  # nobody holds the Run any more: nobody drives it
            due = [b for b in self._beats.values() if b.due <= now][:HEARTBEATS_PER_STEP]
            for beat in due:
                beat.due = now + beat.interval
        for beat in due:
            client = self._client(beat.base_url, beat.token)
            try:
                response = client.session.post(client.api_url(f"runs/{q(beat.run_id)}/heartbeat/"), timeout=(5.0, 15.0))
            except requests.RequestException:
                continue  # the studio is away; the next beat tries again
            status = None
            if response.status_code == 200:
                try:
                    status = response.json().get("status")
                except ValueError:
                    status = None
            if response.status_code in _GONE or status in _TERMINAL:
                self.stop_heartbeats(beat.run_id)

    # --- exit ------------------------------------------------------------------------------------

    def drain_at_exit(self) -> None:
        if not self._queued:
            return
        timeout = env_float("STUDIO_METRICS_EXIT_TIMEOUT_SECONDS", 60.0, minimum=0)
        if not self.flush(timeout=timeout):
            log.warning(
                "%d metric point(s) could not be delivered to the studio within %g s of exit and are lost "
                "(STUDIO_METRICS_EXIT_TIMEOUT_SECONDS)",
                self._queued,
                timeout,
            )


def _halves(parts: list) -> list[list]:
    """Split a batch's parts into two groups of about equal points, keeping each series' order."""
    if len(parts) > 1:
        middle = len(parts) // 2
        return [parts[:middle], parts[middle:]]
    series, values, times, steps = parts[0]
    if len(values) < 2:
        return [parts]
    middle = len(values) // 2
    return [
        [(series, values[:middle], times[:middle], steps[:middle])],
        [(series, values[middle:], times[middle:], steps[middle:])],
    ]


def _answer(response: requests.Response) -> dict:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _detail(response: requests.Response) -> str:
    try:
        body = response.json()
        if isinstance(body, dict) and isinstance(body.get("detail"), str):
            return body["detail"]
    except ValueError:
        pass
    return response.text.strip()[:200]


_SENDER: Sender | None = None
_SENDER_LOCK = threading.Lock()


def sender() -> Sender:
    """The process's sender (created on first use, with its atexit drain)."""
    global _SENDER
    current = _SENDER
    if current is not None:
        return current
    with _SENDER_LOCK:
        if _SENDER is None:
            _SENDER = Sender()
        return _SENDER


def _drain() -> None:
    if _SENDER is not None:
        _SENDER.drain_at_exit()


def _reset_after_fork() -> None:
    # A forked child (e.g. a DataLoader worker) has no sender thread and may have
    # inherited a held lock: it starts afresh; the parent's queue stays the parent's.
    global _SENDER, _SENDER_LOCK
    _SENDER = None
    _SENDER_LOCK = threading.Lock()


atexit.register(_drain)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)
