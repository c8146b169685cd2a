"""SDK metrics against a live studio: every value type round-trips, batching, rejections, and outages.

Outages are real: the SDK talks to the studio through a TCP proxy in this
process that can refuse connections (the studio is unreachable) or forward
requests but drop the answers (the studio stored a batch, the client never
heard), and the points are checked in the studio's database afterwards.
"""

from __future__ import annotations

import logging
import math
import socket
import struct
import threading
import time
import zlib
from urllib.parse import urlparse

import pytest

from runs.models import MetricBatch
from runs.models import Run as RunRow
from runs.sdk import Experiment, UserErrorException, Workspace, _sender

pytestmark = pytest.mark.django_db(transaction=True)


class TcpProxy:
    """Forwards 127.0.0.1:<port> to the studio. `stop()` makes the studio unreachable (connections
    refused, open ones cut); `swallow = True` forwards requests but drops the answers."""

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.swallow = False
        self._listener: socket.socket | None = None
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        listener.settimeout(0.1)
        self._listener = listener
        self._acceptor = threading.Thread(target=self._accept, args=(listener,), daemon=True)
        self._acceptor.start()

    def stop(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            self._acceptor.join()  # it notices within its 0.1 s accept timeout; then the port is free
            listener.close()
        with self._lock:
            for sock in self._open:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                sock.close()
            self._open.clear()

    def _accept(self, listener: socket.socket) -> None:
        while self._listener is listener:
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            try:
                upstream = socket.create_connection(self.upstream, timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._open.update((client, upstream))
            threading.Thread(target=self._pump, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, True), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, is_answer: bool) -> None:
        try:
            while data := src.recv(65536):
                if is_answer and self.swallow:
                    break  # the studio answered; the client never hears it
                dst.sendall(data)
        except OSError:
            pass
        for sock in (src, dst):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()
            with self._lock:
                self._open.discard(sock)


@pytest.fixture
def proxy(live_server):
    address = urlparse(live_server.url)
    proxy = TcpProxy(address.hostname, address.port)
    proxy.start()
    yield proxy
    proxy.stop()


@pytest.fixture
def ws(studio_config) -> Workspace:
    return Workspace.from_config(studio_config)


@pytest.fixture
def run(ws):
    return Experiment(ws, "sdk-metrics").start_logging()


def png_bytes() -> bytes:
    """A valid 1x1 red PNG, written by hand."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00\xff\x00\x00")
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


def points(api, run_id: str, name: str) -> dict:
    response = api.get(f"/api/runs/{run_id}/metrics/points/?name={name}")
    assert response.status_code == 200, response.content
    return response.json()


# --- values -----------------------------------------------------------------------------------------


def test_every_scalar_type_round_trips(run):
    values = [1, 2.5, True, "text", None, math.nan, math.inf, -math.inf, 0, -(2**53)]
    for value in values:
        run.log("mixed", value)
    run.log("once", 0.25, description="logged a single time")
    got = run.get_metrics()
    assert got["once"] == 0.25
    mixed = got["mixed"]
    assert mixed[:5] == [1, 2.5, True, "text", None] and [type(v) for v in mixed[:4]] == [int, float, bool, str]
    assert math.isnan(mixed[5]) and mixed[6] == math.inf and mixed[7] == -math.inf and mixed[8:] == [0, -(2**53)]
    assert run.get_metrics(name="once") == {"once": 0.25} and run.get_metrics(name="nope") == {}


def test_numpy_scalars_are_logged_as_python_values(run):
    np = pytest.importorskip("numpy")
    run.log("np", np.float32(0.5))
    run.log("np", np.int64(3))
    run.log("np", np.bool_(True))
    assert run.get_metrics()["np"] == [0.5, 3, True]


def test_steps_are_kept_and_default_to_the_point_index(run, api):
    for i in range(5):
        run.log("loss", 1.0 / (i + 1), step=i * 10)
    for _ in range(3):
        run.log("acc", 0.5)
    run.flush()
    assert points(api, run.id, "loss")["steps"] == [0, 10, 20, 30, 40]
    assert points(api, run.id, "acc")["steps"] == [0, 1, 2]


def test_lists_rows_tables_and_images_round_trip(run, tmp_path):
    run.log_list("accuracies", [0.5, 0.75, math.nan, None])
    run.log_row("per_class", cls="cat", precision=0.9)
    run.log_row("per_class", cls="dog", precision=0.8)
    run.log_table("curve", {"x": [1, 2, 3], "y": [0.1, 0.2, math.inf]})
    image = tmp_path / "plot.png"
    image.write_bytes(png_bytes())
    run.log_image("sample", path=image)
    run.log_image("sample", path=str(image))
    got = run.get_metrics()
    assert got["accuracies"][:2] == [0.5, 0.75] and math.isnan(got["accuracies"][2]) and got["accuracies"][3] is None
    assert got["per_class"] == {"cls": ["cat", "dog"], "precision": [0.9, 0.8]}
    assert got["curve"] == {"x": [1, 2, 3], "y": [0.1, 0.2, math.inf]}
    assert got["sample"] == ["images/sample/0.png", "images/sample/1.png"]
    assert run.get_file_names() == ["images/sample/0.png", "images/sample/1.png"]
    run.download_file("images/sample/1.png", tmp_path / "back.png")
    assert (tmp_path / "back.png").read_bytes() == png_bytes()


class _Figure:
    """What log_image needs of a matplotlib figure: savefig(stream, format='png')."""

    def savefig(self, stream, format: str) -> None:
        assert format == "png"
        stream.write(png_bytes())


def test_log_image_takes_a_plot_and_needs_exactly_one_source(run, tmp_path):
    run.log_image("figure", plot=_Figure())
    assert run.get_metrics()["figure"] == "images/figure/0.png"
    with pytest.raises(UserErrorException, match="exactly one of path or plot"):
        run.log_image("figure")
    with pytest.raises(UserErrorException, match="exactly one of path or plot"):
        run.log_image("figure", path=tmp_path / "x.png", plot=_Figure())


def test_artifact_metrics_are_stored_as_files(run):
    run.log_confusion_matrix("cm", {"class_labels": ["a", "b"], "matrix": [[1, 0], [0, 1]]})
    assert run.get_metrics()["cm"] == "metrics/cm/0.json"
    with pytest.raises(UserErrorException, match="Invalid JSON provided"):
        run.log_confusion_matrix("cm", "{not json")


@pytest.mark.parametrize("value", [[1, 2], range(3), (x for x in range(3)), (1, 2)])
def test_log_refuses_collections(run, value):
    with pytest.raises(UserErrorException) as refused:
        run.log("seq", value)
    assert str(refused.value) == "run.log does not support list type. Use run.log_list instead"


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda r: r.log("big", 2**60), "2\\*\\*53"),
        (lambda r: r.log("text", "x" * 5000), "limit is 4096"),
        (lambda r: r.log("obj", object()), "cannot be logged"),
        (lambda r: r.log("", 1.0), "non-empty"),
        (lambda r: r.log("s", 1.0, step="a"), "step must be an integer"),
        (lambda r: r.log_row("row", cell=[1, 2]), "must be a scalar"),
        (lambda r: r.log_table("t", {"a": [1], "b": [1, 2]}), "same length"),
        (lambda r: r.log_list("l", "abc"), "takes a list"),
    ],
)
def test_bad_values_are_refused_when_logged_not_later(run, call, message):
    with pytest.raises(UserErrorException, match=message):
        call(run)


def test_recursive_metrics_cover_descendants_that_have_some(run):
    run.log("loss", 1.0)
    quiet = run.child_run()
    with run.child_run() as child:
        child.log("loss", 0.5)
        with child.child_run() as grandchild:
            grandchild.log_list("l", [1, 2])
    got = run.get_metrics(recursive=True)
    assert got == {run.id: {"loss": 1.0}, child.id: {"loss": 0.5}, grandchild.id: {"l": [1, 2]}}
    assert quiet.id not in got


# --- batching and delivery --------------------------------------------------------------------------


def test_points_go_in_large_batches_in_order(run, api):
    queue = _sender.sender()
    before = queue.sent_batches
    for i in range(50_000):
        run.log("loss", i * 0.001)
        if i % 3 == 0:
            run.log("lr", float(i))
    run.flush()
    data = points(api, run.id, "loss")
    assert data["total"] == 50_000 and data["values"] == [i * 0.001 for i in range(50_000)]
    assert points(api, run.id, "lr")["values"] == [float(i) for i in range(0, 50_000, 3)]
    assert queue.sent_batches - before <= 10  # thousands of points per request, not one each


def test_a_refused_series_is_dropped_alone_with_a_warning(run, caplog):
    run.log("x", 1.0)
    run.log("good", 1.0)
    run.log_list("x", [1, 2])  # the studio keeps one kind per name: this series is refused
    run.log("good", 2.0)
    with caplog.at_level(logging.WARNING, logger="runs.sdk"):
        run.flush()
    assert run.get_metrics() == {"x": 1.0, "good": [1.0, 2.0]}
    assert any("refused 1 point(s) of metric 'x'" in r.getMessage() for r in caplog.records)


def test_points_of_a_deleted_run_are_dropped_without_blocking(run, caplog):
    run.log("before", 1.0)
    run.flush()
    RunRow.objects.filter(run_id=run.id).delete()
    with caplog.at_level(logging.WARNING, logger="runs.sdk"):
        for i in range(100):
            run.log("after", float(i))
        started = time.monotonic()
        run.flush(timeout_seconds=30)
    assert time.monotonic() - started < 10
    assert any("no longer accepts metrics" in r.getMessage() for r in caplog.records)


def test_a_full_queue_drops_new_points_and_warns_once(ws, proxy, monkeypatch, caplog, api):
    monkeypatch.setenv("STUDIO_METRICS_QUEUE_MAX", "100")
    small = _sender.Sender()
    monkeypatch.setattr(_sender, "_SENDER", small)
    try:
        run = Experiment(Workspace(url=proxy.url, name="team-a", token=ws._client.token), "full").start_logging()
        proxy.stop()
        with caplog.at_level(logging.WARNING, logger="runs.sdk"):
            for i in range(150):
                run.log("loss", float(i))
        assert small.dropped_full == 50 and small.queued == 100
        warnings = [r for r in caplog.records if "metrics queue is full" in r.getMessage()]
        assert len(warnings) == 1 and "STUDIO_METRICS_QUEUE_MAX" in warnings[0].getMessage()
        proxy.start()
        run.flush(timeout_seconds=30)
        assert points(api, run.id, "loss")["values"] == [float(i) for i in range(100)]
    finally:
        small.close()


@pytest.mark.slow
def test_an_outage_of_30_seconds_loses_no_point_and_stores_none_twice(ws, proxy, api):
    """10,000 points logged while the studio is unreachable are all stored, in order, once."""
    queue = _sender.sender()
    duplicates_before = queue.duplicate_batches
    run = Experiment(Workspace(url=proxy.url, name="team-a", token=ws._client.token), "outage").start_logging()

    # Phase 1 (5 s): requests reach the studio, which stores the first batch, but every answer is
    # lost, so the SDK must retry that batch under the same batch_id.
    proxy.swallow = True
    started = time.monotonic()
    for i in range(10_000):
        run.log("loss", i * 0.5, step=i)
        if i % 1000 == 999:
            time.sleep(0.3)  # a training loop, not a tight one
    logging_seconds = time.monotonic() - started
    time.sleep(max(0.0, 5 - (time.monotonic() - started)))

    # Phase 2 (30 s): the studio is unreachable.
    proxy.stop()
    proxy.swallow = False
    down_at = time.monotonic()
    stored_while_down = MetricBatch.objects.filter(run__run_id=run.id).count()
    time.sleep(30)
    assert MetricBatch.objects.filter(run__run_id=run.id).count() == stored_while_down
    proxy.start()

    run.flush(timeout_seconds=60)
    run.complete()
    assert time.monotonic() - down_at < 60
    assert logging_seconds < 3 + 10 * 0.3  # run.log never waited for the network
    assert stored_while_down == 1  # the first batch got through; only its answer was lost
    data = points(api, run.id, "loss")
    assert data["total"] == 10_000
    assert data["values"] == [i * 0.5 for i in range(10_000)]
    assert data["steps"] == list(range(10_000))
    batches = MetricBatch.objects.filter(run__run_id=run.id)
    assert sum(batches.values_list("points", flat=True)) == 10_000
    assert queue.duplicate_batches > duplicates_before  # that batch was retried under its id, not re-stored
    assert RunRow.objects.get(run_id=run.id).status == "Completed"


def test_points_logged_after_complete_are_still_stored(run):
    run.log("loss", 1.0)
    run.complete()
    run.log("late", 2.0)  # v1 allows logging to a finished run; the point must not be lost
    assert run.get_metrics() == {"loss": 1.0, "late": 2.0}


def test_metrics_travel_with_the_standard_json_module_too(run, monkeypatch):
    from runs.sdk import _json

    monkeypatch.setattr(_json, "_orjson", None)
    for value in (1, 0.5, math.nan, "é", None):
        run.log("plain", value)
    got = run.get_metrics()["plain"]
    assert got[:2] == [1, 0.5] and math.isnan(got[2]) and got[3:] == ["é", None]


EXIT_SCRIPT = """
import sys
from runs.sdk import Experiment, Workspace
ws = Workspace(url=sys.argv[1], name="team-a", token=sys.argv[2])
run = Experiment(ws, "exit").start_logging()
print(run.id, flush=True)
sys.stdin.readline()  # the test may make the studio unreachable now
for i in range(5000):
    run.log("loss", float(i))
assert not [m for m in sys.modules if m == "django" or m.startswith("django.")], "the SDK imported Django"
"""


def _script(url: str, token: str, env: dict | None = None):
    import os
    import subprocess
    import sys
    from pathlib import Path

    return subprocess.Popen(
        [sys.executable, "-c", EXIT_SCRIPT, url, token],
        cwd=Path(__file__).resolve().parent.parent,
        env={**os.environ, **(env or {})},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_points_queued_at_exit_are_delivered_before_the_process_ends(ws, api):
    proc = _script(ws.url, ws._client.token)
    run_id = proc.stdout.readline().strip()
    _out, err = proc.communicate("\n", timeout=60)
    assert proc.returncode == 0, err
    assert points(api, run_id, "loss")["values"] == [float(i) for i in range(5000)]


def test_exit_waits_a_bounded_time_when_the_studio_is_away(ws, proxy):
    proc = _script(proxy.url, ws._client.token, {"STUDIO_METRICS_EXIT_TIMEOUT_SECONDS": "2"})
    proc.stdout.readline()
    proxy.stop()
    started = time.monotonic()
    _out, err = proc.communicate("\n", timeout=60)
    assert proc.returncode == 0 and time.monotonic() - started < 15
    assert "could not be delivered to the studio within 2 s of exit and are lost" in err
