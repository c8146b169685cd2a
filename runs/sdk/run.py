"""Run: one training run (v1 `azureml.core.Run`): status, children, tags, properties, metrics, files.

Metrics are queued in-process and delivered by one background thread
(runs.sdk._sender): `log*` never waits for the network and never raises
because the studio is unreachable. Everything else talks to the studio
directly and raises the SDK's exceptions (runs.sdk.exceptions): a refused
request is a ServiceException carrying the studio's message.
"""

from __future__ import annotations

import codecs
import io
import json
import logging
import os
import re
import sys
import time
import traceback
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runs.sdk import _details, _json, _values
from runs.sdk._env import env_float
from runs.sdk._http import q
from runs.sdk._run_files import RunFiles
from runs.sdk._sender import Sink, sender
from runs.sdk.exceptions import (
    ActivityFailedException,
    ServiceException,
    StudioConnectionException,
    StudioException,
    UserErrorException,
)
from runs.sdk.experiment import _string_values, heartbeat_timeout

if TYPE_CHECKING:
    from runs.sdk.workspace import Workspace

log = logging.getLogger("runs.sdk")

TERMINAL = frozenset({"Completed", "Failed", "Canceled"})
POST_PROCESSING = frozenset({"Finalizing", "CancelRequested"})
DRIVER_LOG = "azureml-logs/70_driver_log.txt"
CHILDREN_MAX = 10_000  # the studio's limit per request (runs.limits.CHILDREN_PER_REQUEST_MAX)
PAGE_SIZE = 500
ENTRY_BYTES_MAX = 1024 * 1024  # one list/row/table value, encoded (runs.limits.ENTRY_JSON_MAX)
END_FLUSH_SECONDS = 300.0


class Run(RunFiles):
    """A run of an experiment. Get one from `Experiment.start_logging()`, `Experiment.submit()`,
    `Run.get(ws, run_id)`, `Run.get_context()`, `Run.list(...)` or `run.get_children()`.

    `Run(experiment, run_id)` fetches an existing run (NotFoundException if it
    does not exist or is not visible).
    """

    def __init__(self, experiment: Any, run_id: str, outputs: str | bool | None = None, **kwargs: Any) -> None:
        self._experiment = experiment
        self._client = experiment.workspace._client
        self._id = run_id
        self._dto: dict | None = kwargs.get("_dto")
        self._outputs_dir = _outputs_folder(outputs)
        self._uploaded_outputs: set[str] = set()
        self._sink: Sink | None = None
        self._sink_owner: Any = None
        self._checked_names: set[str] = set()
        self._image_counts: dict[str, int] = {}
        self._parent: Run | None = None
        if self._dto is None and kwargs.get("_fetch", True):
            self._refresh()

    @classmethod
    def _from_dto(
        cls, experiment: Any, dto: dict, *, outputs: str | bool | None = None, interactive: bool = False
    ) -> Run:
        run = cls(experiment, dto["run_id"], outputs=outputs, _dto=dto)
        if interactive and dto.get("status") not in TERMINAL:
            # Created by this process and driven by it: promise the studio we are alive.
            sender().start_heartbeats(run)
        return run

    # --- lookup ---------------------------------------------------------------------------------

    @staticmethod
    def get(workspace: Workspace, run_id: str) -> Run:
        """The run with this id anywhere in the workspace. Raises NotFoundException."""
        from runs.sdk.experiment import Experiment

        dto = workspace._client.get(f"runs/{q(run_id)}/")
        return Run(Experiment(workspace, dto["experiment"], _create=False), run_id, _dto=dto)

    @staticmethod
    def list(
        experiment: Any,
        type: str | None = None,
        tags: str | dict | None = None,
        properties: str | dict | None = None,
        status: str | Iterable[str] | None = None,
        include_children: bool = False,
        **kwargs: Any,
    ) -> Iterator[Run]:
        """Runs of `experiment`, newest first, as a generator fetched in pages of 500.

        tags/properties: str = the key is present, dict = every pair equal;
        anything else raises ValueError before any request. `status` is one
        status or several. Top-level runs only unless include_children.
        """
        params = _filter_params(tags, properties, status)
        if include_children:
            params["include_children"] = "true"
        return _iter_runs(experiment, f"{experiment._path}/runs/", params, type)

    @classmethod
    def get_context(cls, allow_offline: bool = True, used_for_context_manager: bool = False, **kwargs: Any) -> Any:
        """The run this script was submitted as (from the env vars the runner sets), one cached instance.

        Outside a submitted run: an offline run that prints what would be
        logged (allow_offline=True), else RunEnvironmentException.
        """
        from runs.sdk._context import get_context

        return get_context(allow_offline=allow_offline)

    @classmethod
    def get_submitted_run(cls, **kwargs: Any) -> Run:
        """Deprecated in v1: `get_context(allow_offline=False)`."""
        return cls.get_context(allow_offline=False)

    # --- what a run is ------------------------------------------------------------------------------

    @property
    def id(self) -> str:
        return self._id

    @property
    def experiment(self) -> Any:
        return self._experiment

    @property
    def _path(self) -> str:
        return f"runs/{q(self._id)}"

    def _info(self) -> dict:
        if self._dto is None:
            self._refresh()
        return self._dto  # type: ignore[return-value]

    def _refresh(self) -> dict:
        self._dto = self._client.get(f"{self._path}/")
        if self._dto.get("status") in TERMINAL:
            sender().stop_heartbeats(self._id)
        return self._dto

    @property
    def number(self) -> int:
        """The run's number, increasing within its experiment."""
        return int(self._info()["number"])

    @property
    def display_name(self) -> str:
        return self._info().get("display_name") or ""

    @display_name.setter
    def display_name(self, value: str) -> None:
        self._dto = self._client.patch(f"{self._path}/", {"display_name": value})

    @property
    def description(self) -> str:
        return self._info().get("description") or ""

    @description.setter
    def description(self, value: str) -> None:
        self._dto = self._client.patch(f"{self._path}/", {"description": value})

    @property
    def name(self) -> str:
        """Deprecated in v1; the display name (or the id when there is none)."""
        return self.display_name or self._id

    @property
    def status(self) -> str:
        """The status as last fetched; get_status() asks the studio."""
        return self._info()["status"]

    @property
    def type(self) -> str:
        """'azureml.scriptrun' for submitted scripts (as in v1), 'interactive' for SDK-driven runs."""
        return _details.v1_type(self._info())

    @property
    def tags(self) -> dict:
        """The tags as last fetched (a copy); get_tags() asks the studio."""
        return dict(self._info().get("tags") or {})

    @property
    def properties(self) -> dict:
        """The properties as last fetched (a copy); get_properties() asks the studio."""
        return dict(self._info().get("properties") or {})

    @property
    def parent(self) -> Run | None:
        """The parent run (fetched on first use), or None for a top-level run."""
        parent_id = self._info().get("parent_run_id")
        if not parent_id:
            return None
        if self._parent is None or self._parent.id != parent_id:
            self._parent = Run(self._experiment, parent_id)
        return self._parent

    def get_portal_url(self) -> str:
        """The run's page in the studio."""
        return self._client.web_url(self._info().get("url") or f"runs/{q(self._id)}/")

    def __repr__(self) -> str:
        dto = self._dto or {}
        return (
            f"Run(Experiment: {self._experiment.name},\nId: {self._id},\nType: {_details.v1_type(dto)},\n"
            f"Status: {dto.get('status', '?')})"
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Run) and other._id == self._id and other._client.base_url == self._client.base_url

    def __hash__(self) -> int:
        return hash((self._client.base_url, self._id))

    # --- status ----------------------------------------------------------------------------------

    def get_status(self) -> str:
        """The run's status; asks the studio unless the last known status is final."""
        if self._dto is not None and self._dto.get("status") in TERMINAL:
            return self._dto["status"]
        return self._refresh()["status"]

    def get_detailed_status(self) -> dict:
        status = self.get_status()
        error = (self._dto or {}).get("error") or {}
        detail = (error.get("error") or {}).get("message") if isinstance(error, dict) else None
        return {"status": status, **({"details": detail} if detail else {})}

    def get_details(self) -> dict:
        """v1's run details (camelCase; keys whose value is None are left out, so endTimeUtc is
        absent while the run is active). logFiles maps each log to the URL of its content."""
        return _details.details(self._refresh(), self._client.base_url)

    def get_details_with_logs(self) -> dict:
        """get_details() with each logFiles value replaced by the log's text."""
        details = self.get_details()
        details["logFiles"] = {name: self._read_log(name).decode("utf-8", "replace") for name in details["logFiles"]}
        return details

    def start(self) -> None:
        """NotStarted → Running (runs from start_logging and child_run are Running already)."""
        self._dto = self._client.request("POST", f"{self._path}/start/", retry=True).json()

    def complete(self, _set_status: bool = True) -> None:
        """Flush the run's metrics, upload its outputs folder, then mark it Completed."""
        self._finish()
        if _set_status:
            self._set_status("complete")

    def fail(self, error_details: Any = None, error_code: str | None = None, _set_status: bool = True) -> None:
        """Flush and upload like complete(), then mark the run Failed with an error.

        error_details: a message (str), a dict with 'message', or an exception,
        which gives "User program failed with {Type}: {message}" and its traceback.
        """
        self._finish()
        if _set_status:
            body = {"error_details": error_payload(error_details), "error_code": error_code}
            self._set_status("fail", body)

    def cancel(self) -> None:
        """Cancel the run. A submitted run that executes is stopped (SIGTERM, grace period, SIGKILL)."""
        sender().stop_heartbeats(self._id)
        self._set_status("cancel")
        self._finish()

    def _finish(self) -> None:
        self.flush(timeout_seconds=END_FLUSH_SECONDS)
        self._upload_outputs()

    def _set_status(self, action: str, body: dict | None = None) -> None:
        # Never heartbeat a run after asking the studio to end it.
        sender().stop_heartbeats(self._id)
        self._dto = self._client.post(f"{self._path}/{action}/", body, retry=True)
        if self._sink is not None and sender().forget(self._sink):
            self._sink = None  # points logged after the end (allowed) go to a fresh sink

    def __enter__(self) -> Run:
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> bool:
        """Normal exit and SystemExit(0/None) complete the run (SystemExit(0) is swallowed, as in v1);
        any other exception marks it Failed with the traceback and propagates."""
        if exc_type is None:
            self.complete()
            return False
        if issubclass(exc_type, SystemExit) and getattr(exc, "code", None) in (0, None):
            self.complete()
            return True
        error = exc if exc is not None else exc_type()
        try:
            self.fail(error)
        except StudioException as failure:
            # The user's exception matters more than our failure to record it.
            log.warning("could not mark run %s as Failed: %s", self._id, failure)
        return False

    def wait_for_completion(
        self, show_output: bool = False, wait_post_processing: bool = False, raise_on_error: bool = True
    ) -> dict:
        """Wait for the run to end and return get_details().

        Polls with a delay growing from STUDIO_RUN_POLLING_INTERVAL_MIN (0.5 s)
        to STUDIO_RUN_POLLING_INTERVAL_MAX (5 s). show_output prints the run id
        and web view, streams the driver log until the run ends and prints an
        execution summary. Without wait_post_processing (and without
        show_output) it returns once the run is Finalizing or CancelRequested.
        A Failed run raises ActivityFailedException when raise_on_error.
        """
        if show_output:
            self._stream_until_done()
        else:
            delay, longest = _poll_delays()
            while True:
                status = self.get_status()
                if status in TERMINAL or (not wait_post_processing and status in POST_PROCESSING):
                    break
                time.sleep(delay)
                delay = min(longest, delay * 1.5)
        details = self.get_details()
        if details["status"] == "Failed" and raise_on_error:
            raise ActivityFailedException(error_details=json.dumps(details.get("error") or {}, indent=4))
        return details

    def _stream_until_done(self) -> None:
        out = sys.stdout
        print(f"RunId: {self._id}", file=out)
        print(f"Web View: {self.get_portal_url()}", file=out)
        print(file=out)
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        offset, header = 0, False
        delay, longest = _poll_delays()
        shortest = delay
        while True:
            status = self._refresh()["status"]
            got = 0
            while True:  # read everything there is now, a megabyte at a time
                data, size = self._read_log_from(DRIVER_LOG, offset)
                if not data:
                    break
                if not header:
                    title = f"Streaming {DRIVER_LOG}"
                    print(f"{title}\n{'=' * len(title)}\n", file=out)
                    header = True
                out.write(decoder.decode(data))
                out.flush()
                offset += len(data)
                got += len(data)
                if offset >= size:
                    break
            if status in TERMINAL:
                break
            delay = shortest if got else min(longest, delay * 1.5)
            time.sleep(delay)
        out.write(decoder.decode(b"", final=True))
        print(file=out)
        print("Execution Summary", file=out)
        print("=================", file=out)
        print(f"RunId: {self._id}", file=out)
        print(f"Web View: {self.get_portal_url()}", file=out)
        print(f"Status: {status}", file=out)
        error = (self._dto or {}).get("error")
        if status == "Failed" and isinstance(error, dict):
            print(f"Error: {(error.get('error') or {}).get('message', '')}", file=out)
        print(file=out)
        out.flush()

    # --- children ------------------------------------------------------------------------------------

    def child_run(self, name: str | None = None, run_id: str | None = None, outputs: str | None = None) -> Run:
        """Create a child run, Running at once (use it as a context manager to complete it)."""
        spec: dict[str, Any] = {"run_id": run_id or str(uuid.uuid4()), "heartbeat_timeout_seconds": heartbeat_timeout()}
        if name:
            spec["display_name"] = name
        dto = self._client.post(f"{self._path}/children/", {"children": [spec]})["results"][0]
        return self._new_child(dto, outputs)

    def _new_child(self, dto: dict, outputs: str | bool | None = None) -> Run:
        # Always a plain Run: a submitted run's children are SDK-driven, with heartbeats.
        child = Run._from_dto(self._experiment, dto, outputs=outputs or False, interactive=True)
        child._parent = self
        return child

    def create_children(
        self, count: int | None = None, tag_key: str | None = None, tag_values: Iterable[Any] | None = None
    ) -> list[Run]:
        """Create many children with ONE request: `count` children (each tagged
        azureml.batch_child_number = 0..count-1), or one per value in
        `tag_values`, tagged tag_key = value. At most 10,000. All are Running.

        Raises UserErrorException unless exactly one of `count` or
        `tag_key` + `tag_values` is given, or past the limit.
        """
        if count is not None and (tag_key is not None or tag_values is not None):
            raise UserErrorException("create_children takes either count, or tag_key with tag_values, not both")
        if count is None and tag_key is None and tag_values is None:
            raise UserErrorException("create_children needs either count, or tag_key with tag_values")
        if (tag_key is None) != (tag_values is None):
            raise UserErrorException("create_children needs tag_key and tag_values together")
        if count is not None:
            if isinstance(count, bool) or not isinstance(count, int) or count < 1:
                raise UserErrorException(f"count must be a positive integer, not {count!r}")
            tags = [{"azureml.batch_child_number": str(i)} for i in range(count)]
        else:
            if isinstance(tag_values, str | bytes) or not isinstance(tag_values, Iterable):
                raise UserErrorException("tag_values must be a list of values, one per child")
            values = list(tag_values)
            if not values:
                raise UserErrorException("tag_values must not be empty")
            tags = [_string_values({tag_key: value}) for value in values]
        if len(tags) > CHILDREN_MAX:
            raise UserErrorException(f"create_children can not create more than {CHILDREN_MAX} runs")
        timeout = heartbeat_timeout()
        specs = [{"run_id": str(uuid.uuid4()), "tags": t, "heartbeat_timeout_seconds": timeout} for t in tags]
        results = self._client.post(f"{self._path}/children/", {"children": specs}, timeout=(10.0, 600.0))["results"]
        by_id = {dto["run_id"]: dto for dto in results}
        return [self._new_child(by_id[spec["run_id"]]) for spec in specs]

    def get_children(
        self,
        recursive: bool = False,
        tags: str | dict | None = None,
        properties: str | dict | None = None,
        type: str | None = None,
        status: str | Iterable[str] | None = None,
        **kwargs: Any,
    ) -> Iterator[Run]:
        """Children (with recursive=True also grandchildren, ...) as a generator, newest first.
        Filters as in Run.list, applied by the studio."""
        params = _filter_params(tags, properties, status)
        if recursive:
            params["recursive"] = "true"
        return _iter_runs(self._experiment, f"{self._path}/children/", params, type)

    def submit_child(self, config: Any, tags: dict | None = None, **kwargs: Any) -> Run:
        """Submit a ScriptRunConfig as a child of this run (asynchronous; returns the Queued child)."""
        return self._experiment.submit(config, tags=tags, _parent_run_id=self._id)

    # --- tags and properties -------------------------------------------------------------------------

    def tag(self, key: str, value: Any = None) -> None:
        """Set one tag (tags are mutable); tag(key) stores the key with value None."""
        self.set_tags({key: value})

    def set_tags(self, tags: dict) -> None:
        """Merge tags into the run's tags; tags not named are left alone."""
        if not isinstance(tags, dict):
            raise UserErrorException(f"set_tags takes a dict of tag → value, not {type(tags).__name__}")
        if not tags:
            return
        result = self._client.patch(f"{self._path}/tags/", _string_values(tags))
        self._info()["tags"] = result

    def remove_tags(self, tags: Iterable[str]) -> None:
        """Remove the named tags (absent ones are ignored)."""
        if isinstance(tags, str) or not isinstance(tags, Iterable):
            raise UserErrorException("remove_tags takes a list of tag keys")
        result = self._client.post(f"{self._path}/tags/remove/", {"keys": [str(t) for t in tags]}, retry=True)
        self._info()["tags"] = result

    def get_tags(self) -> dict:
        result = self._client.get(f"{self._path}/tags/")
        self._info()["tags"] = result
        return dict(result)

    def add_properties(self, properties: dict) -> None:
        """Add properties. They are immutable: re-adding a key with the same value is a no-op; a
        different value raises ServiceException with the studio's message and nothing is written."""
        if not isinstance(properties, dict):
            raise UserErrorException(f"add_properties takes a dict, not {type(properties).__name__}")
        if not properties:
            return
        result = self._client.post(f"{self._path}/properties/", _string_values(properties), retry=True)
        self._info()["properties"] = result

    def get_properties(self) -> dict:
        result = self._client.get(f"{self._path}/properties/")
        self._info()["properties"] = result
        return dict(result)

    # --- metrics ---------------------------------------------------------------------------------------

    def _metric_sink(self) -> tuple[Any, Sink]:
        current = sender()
        if self._sink is None or self._sink_owner is not current:
            self._sink = current.sink(self._client.base_url, self._client.token, self._id)
            self._sink_owner = current
        return current, self._sink

    def _name(self, name: str) -> str:
        if name not in self._checked_names:
            _values.check_name(name)
            self._checked_names.add(name)
        return name

    def log(self, name: str, value: Any, description: str = "", step: int | None = None) -> None:
        """Log a scalar (int, float, bool, str, None; NaN and ±inf too). Logging a name again
        appends, building a series. A list, range or generator raises UserErrorException
        (use log_list).

        The point is queued in this process and sent in the background; log() never waits for
        the network and never raises because the studio is unreachable. While it is, points wait
        in a bounded queue (STUDIO_METRICS_QUEUE_MAX, default 5,000,000 points) and are delivered
        in order when it returns; when the queue is full, NEW points are dropped and counted,
        with a warning at most once a minute. See runs.sdk._sender for the delivery guarantees."""
        self._name(name)
        value = _values.scalar(name, value)
        if step is not None and type(step) is not int:
            step = _step(step)
        queue, sink = self._metric_sink()
        queue.add(sink, name, "scalar", value, time.time(), step, description or "")

    def log_list(self, name: str, value: Iterable[Any], description: str = "") -> None:
        """Log a list of scalars as one value of a list metric."""
        self._entry(name, "list", _values.scalar_list(self._name(name), value), description)

    def log_row(self, name: str, description: str | None = None, **kwargs: Any) -> None:
        """Log one row of a table metric: log_row("t", x=1, y=2). Cells must be scalars."""
        self._entry(name, "row", _values.row(self._name(name), kwargs), description)

    def log_table(self, name: str, value: dict, description: str = "") -> None:
        """Log a table: {column: [values]}, every column the same length."""
        self._entry(name, "table", _values.table(self._name(name), value), description)

    def log_image(
        self, name: str, path: str | os.PathLike | None = None, plot: Any = None, description: str = ""
    ) -> None:
        """Log an image: a PNG file (`path`) or a matplotlib figure/pyplot (`plot`), exactly one.

        The file is uploaded at once as images/<name>/<n>.png and the metric
        records that path (get_metrics() returns it).
        """
        self._name(name)
        if (path is None) == (plot is None):
            raise UserErrorException("log_image needs exactly one of path or plot")
        if path is not None:
            try:
                data = Path(path).read_bytes()
            except OSError as exc:
                raise UserErrorException(f"log_image cannot read {path}: {exc}") from None
        else:
            buffer = io.BytesIO()
            try:
                plot.savefig(buffer, format="png")
            except AttributeError:
                raise UserErrorException("plot must be a matplotlib figure or pyplot (with savefig)") from None
            data = buffer.getvalue()
        stored = self._upload_numbered(f"images/{_safe_segment(name)}", "png", data, "image")
        if stored is not None:
            self._entry(name, "image", {"path": stored}, description)

    def _log_artifact_metric(self, name: str, value: Any, kind: str, description: str) -> None:
        # v1 stores these as artifacts; here the JSON is a run file and the metric points to it.
        self._name(name)
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                raise UserErrorException("Invalid JSON provided") from None
        if not isinstance(value, dict):
            raise UserErrorException(f"{kind} takes a dict or a JSON string")
        data = json.dumps({"schema_type": kind, "data": value}, default=str).encode()
        stored = self._upload_numbered(f"metrics/{_safe_segment(name)}", "json", data, "upload")
        if stored is not None:
            self._entry(name, "image", {"path": stored, "type": kind}, description)

    def log_confusion_matrix(self, name: str, value: Any, description: str = "") -> None:
        self._log_artifact_metric(name, value, "confusion_matrix", description)

    def log_accuracy_table(self, name: str, value: Any, description: str = "") -> None:
        self._log_artifact_metric(name, value, "accuracy_table", description)

    def log_residuals(self, name: str, value: Any, description: str = "") -> None:
        self._log_artifact_metric(name, value, "residuals", description)

    def log_predictions(self, name: str, value: Any, description: str = "") -> None:
        self._log_artifact_metric(name, value, "predictions", description)

    def _upload_numbered(self, prefix: str, suffix: str, data: bytes, origin: str) -> str | None:
        """Upload `data` as <prefix>/<n>.<suffix> with the first free n; None if the studio is away."""
        n = self._image_counts.get(prefix, 0)
        for _ in range(10_000):
            name = f"{prefix}/{n}.{suffix}"
            n += 1
            try:
                self._upload_bytes(name, data, origin)
            except ServiceException as exc:
                if exc.status_code == 409:
                    continue  # written by an earlier process; names are write-once
                raise
            except StudioConnectionException as exc:
                log.warning("could not upload %s to run %s; it is not logged: %s", name, self._id, exc)
                return None
            finally:
                self._image_counts[prefix] = n
            return name
        raise UserErrorException(f"run {self._id} has too many files under {prefix}/")

    def _entry(self, name: str, kind: str, value: Any, description: str | None) -> None:
        if len(_json.dumps(value)) > ENTRY_BYTES_MAX:
            raise UserErrorException(f"metric '{name}': one value is larger than {ENTRY_BYTES_MAX} bytes encoded")
        queue, sink = self._metric_sink()
        queue.add(sink, name, kind, value, time.time(), None, description or "")

    def flush(self, timeout_seconds: float = 300) -> None:
        """Wait until the metrics logged so far are stored (or `timeout_seconds` pass; then they
        stay queued and keep being retried in the background, with a warning)."""
        if self._sink is None:
            return
        if not sender().flush(self._sink, timeout_seconds):
            log.warning(
                "run %s: %d metric point(s) not yet delivered after %g s; they stay queued and are retried",
                self._id,
                sender().pending(self._sink),
                timeout_seconds,
            )

    def get_metrics(
        self, name: str | None = None, recursive: bool = False, run_type: str | None = None, populate: bool = False
    ) -> dict:
        """{name: value} (a list when logged several times); tables are {column: [values]};
        images the stored file path. recursive=True gives {run_id: {...}} for this run and its
        descendants that have metrics. Metrics this process queued are flushed first."""
        if recursive:
            sender().flush(None, END_FLUSH_SECONDS)
            out = {}
            runs = [self, *self.get_children(recursive=True, type=run_type)]
            for run in runs:
                metrics = run._fetch_metrics(name)
                if metrics:
                    out[run.id] = metrics
            return out
        self.flush(END_FLUSH_SECONDS)
        return self._fetch_metrics(name)

    def _fetch_metrics(self, name: str | None) -> dict:
        data = _values.decode(self._client.get(f"{self._path}/metrics/"))
        if name is not None:
            return {name: data[name]} if name in data else {}
        return data


# --- helpers ---------------------------------------------------------------------------------------------


def error_payload(error_details: Any) -> Any:
    """fail()'s error as the studio stores it: a message, or {"message", ...}."""
    if error_details is None:
        return None
    if isinstance(error_details, BaseException):
        exc = error_details
        trace = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        return {
            "message": f"User program failed with {type(exc).__name__}: {exc}",
            "debugInfo": {"type": type(exc).__name__, "message": str(exc), "stackTrace": trace},
        }
    if isinstance(error_details, dict):
        return json.loads(json.dumps(error_details, default=str))
    return str(error_details)


def _filter_params(tags: Any, properties: Any, status: Any) -> dict[str, str]:
    params: dict[str, str] = {}
    for what, value in (("tags", tags), ("properties", properties)):
        if value is None:
            continue
        if isinstance(value, str):
            params[what] = json.dumps(value)
        elif isinstance(value, dict):
            if value:
                params[what] = json.dumps(_string_values(value))
        else:
            raise ValueError(f"Unknown filter type for run {what}: {type(value)}")
    if status:
        params["status"] = status if isinstance(status, str) else ",".join(status)
    return params


def _iter_runs(experiment: Any, path: str, params: dict, run_type: str | None) -> Iterator[Run]:
    from runs.sdk.experiment import Experiment

    client = experiment.workspace._client
    experiments = {experiment.name: experiment}
    wanted = _details.RUN_TYPES.get(run_type, run_type) if run_type else None

    def pages() -> Iterator[Run]:
        continuation = None
        while True:
            query = {**params, "page_size": PAGE_SIZE}
            if continuation:
                query["continuation"] = continuation
            page = client.get(path, params=query)
            for dto in page["results"]:
                if wanted and _details.v1_type(dto) != wanted:
                    continue
                owner = experiments.get(dto["experiment"])
                if owner is None:
                    owner = experiments[dto["experiment"]] = Experiment(
                        experiment.workspace, dto["experiment"], _create=False
                    )
                yield Run(owner, dto["run_id"], _dto=dto)
            continuation = page.get("continuation")
            if not continuation:
                return

    return pages()


def _outputs_folder(outputs: str | bool | None) -> Path | None:
    if outputs is None or outputs is False:
        return None
    return Path("outputs" if outputs is True else outputs).resolve()


def _step(step: Any) -> int:
    if isinstance(step, bool) or not hasattr(step, "__index__"):
        raise UserErrorException(f"step must be an integer, not {step!r}")
    return int(step.__index__())


def _safe_segment(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip(".") or "metric"


def _poll_delays() -> tuple[float, float]:
    shortest = env_float("STUDIO_RUN_POLLING_INTERVAL_MIN", 0.5, minimum=0.01)
    longest = env_float("STUDIO_RUN_POLLING_INTERVAL_MAX", 5.0, minimum=shortest)
    return shortest, longest
