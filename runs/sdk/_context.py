"""Run.get_context(): the submitted run this script is, or an offline run that only prints.

Inside a script started by the studio's runner, the environment names the run
(STUDIO_RUN_ID), the studio (STUDIO_URL), a token scoped to the run
(STUDIO_RUN_TOKEN), the workspace and experiment. The returned run is one
cached instance per run. Its status follows the script's process: complete()
only flushes metrics, fail() flushes and warns (exit with a non-zero code to
fail), cancel() only warns. The studio's runner heartbeats for it.

Outside a submitted run (a plain `python train.py`), allow_offline=True gives
an _OfflineRun whose log* methods print what they would have logged, so the
same script runs anywhere; allow_offline=False raises RunEnvironmentException.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import uuid
from typing import Any

from runs.sdk._env import env_float
from runs.sdk.exceptions import RunEnvironmentException
from runs.sdk.run import Run

log = logging.getLogger("runs.sdk")

CONTEXT_ENV = ("STUDIO_RUN_ID", "STUDIO_RUN_TOKEN", "STUDIO_URL", "STUDIO_WORKSPACE", "STUDIO_EXPERIMENT")
_cache: dict[tuple[str, ...], _SubmittedRun] = {}
_cache_lock = threading.Lock()


def get_context(allow_offline: bool = True) -> Any:
    missing = [name for name in CONTEXT_ENV if not os.environ.get(name)]
    if missing:
        if allow_offline:
            return _OfflineRun()
        raise RunEnvironmentException(
            "this code is not running inside a submitted run: the environment variable(s) "
            f"{', '.join(missing)} are not set (the studio's runner sets them). Use "
            "Run.get_context() (allow_offline=True) to get an offline run outside the studio."
        )
    key = tuple(os.environ[name] for name in CONTEXT_ENV)
    with _cache_lock:
        run = _cache.get(key)
        if run is None:
            run = _cache[key] = _SubmittedRun._from_environment()
            _flush_on_sigterm()
        return run


def _flush_on_sigterm() -> None:
    """On cancel the runner sends SIGTERM, whose default action skips atexit: deliver queued points.

    SIGTERM becomes SystemExit(143): the stack unwinds (finally blocks run, no
    lock stays held), then the atexit drain sends what is queued, bounded by
    STUDIO_CANCEL_FLUSH_SECONDS (5 s) to stay inside the runner's grace period.
    Only when the script has not set its own SIGTERM handler (we never replace
    one), and only from the main thread (the only place handlers can be set).
    """
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return

    def exit_on_sigterm(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM ends it at once
        os.environ.setdefault(
            "STUDIO_METRICS_EXIT_TIMEOUT_SECONDS", str(env_float("STUDIO_CANCEL_FLUSH_SECONDS", 5.0, minimum=0))
        )
        raise SystemExit(128 + signal.SIGTERM)

    signal.signal(signal.SIGTERM, exit_on_sigterm)


class _SubmittedRun(Run):
    """The run a submitted script is (see the module docstring). Built without a network call,
    so a script starts even while the studio is unreachable; details are fetched when needed."""

    @classmethod
    def _from_environment(cls) -> _SubmittedRun:
        from runs.sdk.experiment import Experiment
        from runs.sdk.workspace import Workspace

        workspace = Workspace(
            url=os.environ["STUDIO_URL"],
            name=os.environ["STUDIO_WORKSPACE"],
            token=os.environ["STUDIO_RUN_TOKEN"],
            experiment_name=os.environ["STUDIO_EXPERIMENT"],
            _validate=False,
        )
        experiment = Experiment(workspace, os.environ["STUDIO_EXPERIMENT"], _create=False)
        return cls(experiment, os.environ["STUDIO_RUN_ID"], _fetch=False)

    def complete(self, _set_status: bool = True) -> None:
        """Flush the metrics; the status is decided when the script's process exits (code 0: Completed)."""
        self.flush()

    def fail(self, error_details: Any = None, error_code: str | None = None, _set_status: bool = True) -> None:
        """Flush the metrics and warn: a submitted run's status follows its exit code."""
        self.flush()
        log.warning(
            "run %s is a submitted run: fail() does not change its status, which follows the script's exit "
            "code; exit with a non-zero code (e.g. raise, or sys.exit(1)) to mark it Failed. Error: %s",
            self.id,
            error_details,
        )

    def cancel(self) -> None:
        """Only warns: cancel a submitted run from outside (studio, CLI, or Run.get(ws, id).cancel())."""
        log.warning(
            "run %s is a submitted run; it cannot cancel itself. Cancel it from the studio, the CLI, or with "
            "Run.get(ws, run_id).cancel() from another process.",
            self.id,
        )

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> bool:
        self.complete()
        return False


class _OfflineRun:
    """A stand-in for a run outside the studio: log* and friends print what they would record.

    Like v1's offline run it has no get_metrics, get_status or experiment
    (AttributeError), `complete` and `cancel` do nothing and `fail` prints.
    """

    def __init__(self, run_id: str | None = None, parent: _OfflineRun | None = None) -> None:
        self.id = run_id or f"OfflineRun_{uuid.uuid4()}"
        self.parent = parent
        self._tags: dict = {}
        self._properties: dict = {}
        self.display_name = ""
        self.description = ""
        self.number = 0

    def _print_metric(self, kind: str, name: str, value: Any) -> None:
        print(f"Attempted to log {kind} metric {name}:\n{value}")

    def log(self, name: str, value: Any, description: str = "", step: int | None = None) -> None:
        self._print_metric("scalar", name, value)

    def log_list(self, name: str, value: Any, description: str = "") -> None:
        self._print_metric("list", name, value)

    def log_row(self, name: str, description: str | None = None, **kwargs: Any) -> None:
        self._print_metric("row", name, kwargs)

    def log_table(self, name: str, value: Any, description: str = "") -> None:
        self._print_metric("table", name, value)

    def log_image(self, name: str, path: Any = None, plot: Any = None, description: str = "") -> None:
        self._print_metric("image", name, path if path is not None else plot)

    def log_confusion_matrix(self, name: str, value: Any, description: str = "") -> None:
        self._print_metric("confusion_matrix", name, value)

    def log_accuracy_table(self, name: str, value: Any, description: str = "") -> None:
        self._print_metric("accuracy_table", name, value)

    def log_residuals(self, name: str, value: Any, description: str = "") -> None:
        self._print_metric("residuals", name, value)

    def log_predictions(self, name: str, value: Any, description: str = "") -> None:
        self._print_metric("predictions", name, value)

    def tag(self, key: str, value: Any = None) -> None:
        print(f"Attempted to set tag {key} to {value}")
        self._tags[key] = value

    def set_tags(self, tags: dict) -> None:
        print(f"Attempted to set tags {tags}")
        self._tags.update(tags)

    def remove_tags(self, tags: list) -> None:
        print(f"Attempted to remove tags {tags}")
        for key in tags:
            self._tags.pop(key, None)

    def get_tags(self) -> dict:
        return dict(self._tags)

    def add_properties(self, properties: dict) -> None:
        print(f"Attempted to add properties {properties}")
        self._properties.update(properties)

    def get_properties(self) -> dict:
        return dict(self._properties)

    def upload_file(self, name: str, path_or_stream: Any, datastore_name: Any = None) -> None:
        print(f"Attempted to upload file {path_or_stream} as {name}")

    def upload_files(self, names: list, paths: list, **kwargs: Any) -> None:
        print(f"Attempted to upload files {paths} as {names}")

    def upload_folder(self, name: str, path: Any, datastore_name: Any = None) -> None:
        print(f"Attempted to upload folder {path} as {name}")

    def child_run(self, name: str | None = None, run_id: str | None = None, outputs: Any = None) -> _OfflineRun:
        return _OfflineRun(run_id or f"{self.id}.{name or uuid.uuid4()}", parent=self)

    def get_children(self, *args: Any, **kwargs: Any) -> list:
        return []

    def flush(self, timeout_seconds: float = 300) -> None:
        pass

    def complete(self, _set_status: bool = True) -> None:
        pass

    def cancel(self) -> None:
        pass

    def fail(self, error_details: Any = None, error_code: str | None = None, _set_status: bool = True) -> None:
        print(f"Attempted to fail run {self.id} with error: {error_details}")

    def __enter__(self) -> _OfflineRun:
        print(f"[START] Run {self.id} context")
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> bool:
        print(f"[STOP] Run {self.id} context")
        return False

    def __repr__(self) -> str:
        return f"_OfflineRun(Id: {self.id})"
