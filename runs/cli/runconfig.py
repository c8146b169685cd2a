"""Run configuration files: `.studio/<name>.runconfig`, read by `studio run submit-script -c <name>`.

A runconfig is YAML (JSON is YAML too) with these keys, all optional:

    script: train.py                 # relative to the source directory
    arguments: [--epochs, "3"]
    target: local                    # a compute target; null = the workspace's default
    environment_variables: {PYTHONUNBUFFERED: "1"}
    max_run_duration_seconds: 3600   # the run is stopped and Failed after this long
    cancel_grace_seconds: 10         # between SIGTERM and SIGKILL on cancel

v1 spellings are read too, so a ported Azure ML `.runconfig` works: the
camelCase `maxRunDurationSeconds` and `environment.environmentVariables`.
The other v1 keys (framework, communicator, docker, history, ...) do not
apply here and are ignored (listed with --verbose).

`-c NAME` looks for NAME.runconfig in the project's `.studio/`, then
`.azureml/`, then `aml_config/`; `-c path/to/file.runconfig` reads that file.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runs.cli.errors import CliError, Exit

log = logging.getLogger("runs.cli")

SUFFIX = ".runconfig"
FOLDERS = (".studio", ".azureml", "aml_config")
KNOWN = {
    "script",
    "arguments",
    "target",
    "environment_variables",
    "max_run_duration_seconds",
    "cancel_grace_seconds",
}

_HEADER = """\
# Run configuration for `studio run submit-script -c {name} SCRIPT [ARGS...]`.
# {purpose}
# The script and arguments given on the command line, --target and --env
# override the values here. Format: YAML (JSON works too).

"""

_BODY = """\
# The script to run, relative to the source directory, and its arguments.
script: null
arguments: []
# The compute target (`studio compute list`); null means the workspace's default.
target: {target}
# Extra environment variables for the script.
environment_variables:
  PYTHONUNBUFFERED: "1"
# The run is stopped, and marked Failed, after this many seconds.
max_run_duration_seconds: {max_seconds}
# Seconds between SIGTERM and SIGKILL when the run is canceled.
cancel_grace_seconds: 10
"""

SAMPLES = {
    "sklearn": ("A training run on the workspace's default target, stopped after 30 days (v1's default).", 2592000),
    "local": ("A short run on the `local` target, stopped after one hour.", 3600),
}


def sample_text(name: str, target: str | None) -> str:
    purpose, max_seconds = SAMPLES[name]
    if name == "local":
        target = "local"
    return _HEADER.format(name=name, purpose=purpose) + _BODY.format(target=target or "null", max_seconds=max_seconds)


def write_samples(folder: Path, default_target: str | None) -> list[Path]:
    """Write the sample runconfigs into `folder` (.studio/); existing files are kept (they may be edited)."""
    written = []
    for name in SAMPLES:
        path = folder / f"{name}{SUFFIX}"
        if not path.exists():
            path.write_text(sample_text(name, default_target), encoding="utf-8")
            written.append(path)
    return written


@dataclass
class RunConfig:
    path: Path
    script: str | None = None
    arguments: list[str] = field(default_factory=list)
    target: str | None = None
    environment_variables: dict[str, str] = field(default_factory=dict)
    max_run_duration_seconds: int | None = None
    cancel_grace_seconds: float | None = None


def find(name: str, roots: list[Path]) -> Path:
    """The runconfig file `-c name` means; CliError (usage) saying where it looked."""
    as_path = Path(name).expanduser()
    if as_path.suffix == SUFFIX and as_path.is_file():
        return as_path
    stem = name.removesuffix(SUFFIX)
    looked = []
    for root in dict.fromkeys(roots):  # keep order, drop duplicates
        for folder in FOLDERS:
            candidate = root / folder / f"{stem}{SUFFIX}"
            looked.append(str(candidate))
            if candidate.is_file():
                return candidate
    raise CliError(
        f"no run configuration '{name}' (looked for {', '.join(looked[:3])}): run `studio folder attach` "
        "to write the samples (sklearn, local), or pass the path of a .runconfig file",
        Exit.USAGE,
    )


def load(path: Path) -> RunConfig:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CliError(f"cannot read the run configuration {path}: {exc.strerror or exc}", Exit.USAGE) from None
    data = _parse(text, path)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise CliError(f"the run configuration {path} must be a mapping of keys to values", Exit.USAGE)
    environment = data.get("environment") if isinstance(data.get("environment"), dict) else {}
    variables = data.get("environment_variables")
    if variables is None:
        variables = environment.get("environmentVariables") or environment.get("environment_variables")
    max_seconds = data.get("max_run_duration_seconds", data.get("maxRunDurationSeconds"))
    ignored = sorted(k for k in data if k not in KNOWN and k not in ("maxRunDurationSeconds", "environment"))
    if ignored:
        log.info("%s: ignored keys that do not apply to the studio: %s", path, ", ".join(ignored))
    config = RunConfig(path=path)
    config.script = _optional_str(data.get("script"), "script", path)
    config.arguments = _str_list(data.get("arguments"), path)
    config.target = _optional_str(data.get("target"), "target", path)
    config.environment_variables = _str_dict(variables, path)
    config.max_run_duration_seconds = _optional_number(max_seconds, "max_run_duration_seconds", path, int)
    config.cancel_grace_seconds = _optional_number(data.get("cancel_grace_seconds"), "cancel_grace_seconds", path)
    return config


def _parse(text: str, path: Path) -> Any:
    try:
        import yaml
    except ImportError:  # PyYAML is a runtime requirement; JSON runconfigs still work without it
        import json

        try:
            return json.loads(text)
        except ValueError as exc:
            raise CliError(f"the run configuration {path} is not valid JSON ({exc})", Exit.USAGE) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        reason = " ".join(str(exc).split())
        raise CliError(f"the run configuration {path} is not valid YAML: {reason}", Exit.USAGE) from None


def _optional_str(value: Any, key: str, path: Path) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        return str(value)
    raise CliError(f"{path}: '{key}' must be a string", Exit.USAGE)


def _str_list(value: Any, path: Path) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or any(isinstance(v, dict | list) for v in value):
        raise CliError(f"{path}: 'arguments' must be a list of strings", Exit.USAGE)
    return [str(v) for v in value]


def _str_dict(value: Any, path: Path) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise CliError(f"{path}: 'environment_variables' must be a mapping of NAME: value", Exit.USAGE)
    return {str(k): "" if v is None else str(v) for k, v in value.items()}


def _optional_number(value: Any, key: str, path: Path, kind: type = float) -> Any:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise CliError(f"{path}: '{key}' must be a positive number of seconds", Exit.USAGE)
    return kind(value)
