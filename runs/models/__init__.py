from runs.models.compute import ComputeTarget, WorkerHost
from runs.models.experiments import Experiment
from runs.models.files import LogFile, RunFile
from runs.models.metrics import MetricBatch, MetricChunk, MetricEntry, MetricSeries
from runs.models.runs import Run, RunEvent, RunProperty, RunTag, Snapshot
from runs.models.tokens import ApiToken
from runs.models.views import SavedView
from runs.models.workspaces import Membership, Workspace

__all__ = [
    "ApiToken",
    "ComputeTarget",
    "Experiment",
    "LogFile",
    "Membership",
    "MetricBatch",
    "MetricChunk",
    "MetricEntry",
    "MetricSeries",
    "Run",
    "RunEvent",
    "RunFile",
    "RunProperty",
    "RunTag",
    "SavedView",
    "Snapshot",
    "WorkerHost",
    "Workspace",
]
