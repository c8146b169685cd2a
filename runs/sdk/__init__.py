"""Run Studio's Python SDK: the Azure ML SDK v1 run API, against a self-hosted studio.

    from runs.sdk import Workspace, Experiment, Run, ScriptRunConfig

Imports no Django; needs only `requests` (and `pathspec` to snapshot folders).
"""

VERSION = "1.0.0"
