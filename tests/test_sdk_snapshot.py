"""Snapshots of a source folder (ignore rules, determinism, symlinks, limits) and Experiment.submit.

The submitted runs here go to a compute target no worker serves, so they stay
Queued; running them is the end-to-end tests' business.
"""

from __future__ import annotations

import io
import os
import stat
import zipfile
from contextlib import contextmanager

import pytest

from runs.models import ComputeTarget, Snapshot
from runs.models import Workspace as WorkspaceRow
from runs.sdk import (
    Experiment,
    ExperimentExecutionException,
    RunConfiguration,
    ScriptRunConfig,
    SnapshotException,
    UserErrorException,
    Workspace,
    snapshot,
)


def make_tree(root, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def names(folder) -> list[str]:
    return [f.name for f in snapshot.collect(folder)]


def zipped(folder) -> bytes:
    out = io.BytesIO()
    snapshot.write_zip(snapshot.collect(folder), out)
    return out.getvalue()


# --- what goes in ------------------------------------------------------------------------------------


def test_amlignore_wins_over_gitignore_and_tool_folders_are_always_left_out(tmp_path):
    make_tree(
        tmp_path,
        {
            "train.py": "print(1)",
            "data/big.csv": "x",
            "logs/run.log": "x",
            "notes.md": "x",
            ".gitignore": "notes.md\n",
            ".amlignore": "data/\n*.log\n!keep.log\n",
            "keep.log": "kept by the negation",
            ".git/HEAD": "ref",
            ".studio/config.json": "{}",
            ".azureml/config.json": "{}",
            "pkg/__pycache__/m.pyc": "x",
            "nb/.ipynb_checkpoints/a.ipynb": "x",
            "pkg/m.py": "x",
        },
    )
    assert names(tmp_path) == [".amlignore", ".gitignore", "keep.log", "notes.md", "pkg/m.py", "train.py"]
    (tmp_path / ".amlignore").unlink()
    assert names(tmp_path) == [
        ".gitignore",
        "data/big.csv",
        "keep.log",
        "logs/run.log",
        "pkg/m.py",
        "train.py",
    ]  # .gitignore applies when there is no .amlignore


def test_identical_folders_give_identical_bytes_and_keep_the_executable_bit(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    make_tree(first, {"train.py": "print(1)", "sub/run.sh": "echo hi", "z.txt": "z"})
    make_tree(second, {"z.txt": "z", "sub/run.sh": "echo hi", "train.py": "print(1)"})  # other order
    for folder in (first, second):
        (folder / "sub" / "run.sh").chmod(0o755)
    os.utime(second / "train.py", (1_000_000, 1_000_000))  # other timestamps
    assert zipped(first) == zipped(second)
    with zipfile.ZipFile(io.BytesIO(zipped(first))) as archive:
        assert archive.namelist() == ["sub/run.sh", "train.py", "z.txt"]
        modes = {i.filename: stat.S_IMODE(i.external_attr >> 16) for i in archive.infolist()}
        assert modes == {"sub/run.sh": 0o755, "train.py": 0o644, "z.txt": 0o644}
        assert {i.date_time for i in archive.infolist()} == {(1980, 1, 1, 0, 0, 0)}
    (second / "z.txt").write_text("changed")
    assert zipped(first) != zipped(second)


def test_a_symlink_inside_is_stored_as_its_target_and_one_outside_is_refused(tmp_path):
    outside = tmp_path / "secret.txt"
    outside.write_text("not for the snapshot")
    project = tmp_path / "project"
    make_tree(project, {"train.py": "print(1)", "lib/util.py": "def f(): pass"})
    (project / "util_link.py").symlink_to(project / "lib" / "util.py")
    (project / "lib_link").symlink_to(project / "lib")
    with zipfile.ZipFile(io.BytesIO(zipped(project))) as archive:
        assert archive.namelist() == ["lib/util.py", "lib_link/util.py", "train.py", "util_link.py"]
        assert archive.read("util_link.py") == b"def f(): pass"
    (project / "leak.txt").symlink_to(outside)
    with pytest.raises(SnapshotException) as refused:
        snapshot.collect(project)
    assert str(project / "leak.txt") in str(refused.value) and "outside the source folder" in str(refused.value)
    (project / ".amlignore").write_text("leak.txt\n")
    assert "leak.txt" not in names(project)  # an ignored link is not followed at all


def test_broken_and_looping_symlinks_are_named(tmp_path):
    make_tree(tmp_path, {"train.py": "x"})
    (tmp_path / "gone").symlink_to(tmp_path / "nowhere")
    with pytest.raises(SnapshotException, match="broken symlink"):
        snapshot.collect(tmp_path)
    (tmp_path / "gone").unlink()
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "up").symlink_to(tmp_path / "sub")
    with pytest.raises(SnapshotException, match="symlink loop"):
        snapshot.collect(tmp_path)


@pytest.mark.parametrize(
    "variable, value, message",
    [
        ("STUDIO_SNAPSHOT_MAX_BYTES", "1000", "limit of 1000 bytes"),
        ("STUDIO_SNAPSHOT_MAX_FILES", "3", "limit of 3 files"),
    ],
)
def test_limits_are_checked_before_zipping(tmp_path, monkeypatch, variable, value, message):
    monkeypatch.setenv(variable, value)
    make_tree(tmp_path, {f"f{i}.txt": "x" * 300 for i in range(5)})
    with pytest.raises(SnapshotException) as refused:
        snapshot.collect(tmp_path)
    assert message in str(refused.value) and "add large files to .amlignore" in str(refused.value)


# --- submit ---------------------------------------------------------------------------------------------


@contextmanager
def counted_requests(client):
    calls: list[tuple[str, str]] = []
    original = client.session.request

    def request(method, url, *args, **kwargs):
        calls.append((method, url))
        return original(method, url, *args, **kwargs)

    client.session.request = request
    try:
        yield calls
    finally:
        client.session.request = original


@pytest.fixture
def exp(studio_config):
    ComputeTarget.objects.create(
        workspace=WorkspaceRow.objects.get(name="team-a"), name="sdk-noworker", description="no worker serves it"
    )
    return Experiment(Workspace.from_config(studio_config), "submitted")


@pytest.fixture
def project(tmp_path):
    root = tmp_path / "project"
    make_tree(root, {"hello_with_delay.py": "import time; time.sleep(10)", "child.py": "print('child')"})
    return root


@pytest.mark.django_db(transaction=True)
def test_submit_uploads_the_snapshot_once_and_queues_the_run(exp, project):
    target = exp.workspace.compute_targets["sdk-noworker"]
    src = ScriptRunConfig(
        source_directory=str(project),
        script="hello_with_delay.py",
        arguments=["--fruit", "Apple", 3],
        compute_target=target,
        environment_variables={"MODE": "fast"},
    )
    run = exp.submit(src, tags={"fruit": "Apple"})
    assert run.get_status() == "Queued" and run.type == "azureml.scriptrun"
    details = run.get_details()
    assert details["target"] == "sdk-noworker" and details["tags"] == {"fruit": "Apple"}
    definition = details["runDefinition"]
    assert definition["script"] == "hello_with_delay.py" and definition["arguments"] == ["--fruit", "Apple", "3"]
    assert definition["environmentVariables"] == {"MODE": "fast"} and definition["maxRunDurationSeconds"] == 2592000
    assert Snapshot.objects.get().sha256 == definition["snapshotId"] == run.get_snapshot_id()

    client = exp.workspace._client
    with counted_requests(client) as calls:
        again = exp.submit(src)
    assert [m for m, url in calls if "/snapshots/" in url] == ["GET"]  # stored already: not sent again
    assert again.get_status() == "Queued" and Snapshot.objects.count() == 1

    child = run.submit_child(ScriptRunConfig(str(project), script="child.py", compute_target="sdk-noworker"))
    assert child.parent.id == run.id and child.get_status() == "Queued"
    assert [c.id for c in run.get_children()] == [child.id]
    run.cancel()
    assert run.get_status() == "Canceled"  # not dispatched yet: canceled at once


@pytest.mark.django_db(transaction=True)
def test_submit_a_command_and_a_run_configuration(exp, project):
    config = RunConfiguration(script="child.py", arguments=["a"], target="sdk-noworker")
    run = exp.submit(ScriptRunConfig(str(project), run_config=config))
    assert run.get_details()["runDefinition"]["script"] == "child.py" and run.get_details()["target"] == "sdk-noworker"
    run = exp.submit(ScriptRunConfig(str(project), command=["python", "child.py"], compute_target="sdk-noworker"))
    assert run.get_details()["runDefinition"]["command"] == ["python", "child.py"]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("script", ["missing.py", "../outside.py", "/etc/hostname"])
def test_a_script_outside_the_folder_is_refused_before_anything_is_sent(exp, project, script):
    (project.parent / "outside.py").write_text("print(1)")
    with counted_requests(exp.workspace._client) as calls, pytest.raises(ExperimentExecutionException) as refused:
        exp.submit(ScriptRunConfig(source_directory=str(project), script=script))
    assert str(refused.value) == (
        f"{project / script} script path doesn't exist. The script should be inside the project folder"
    )
    assert isinstance(refused.value, UserErrorException) and calls == []


@pytest.mark.django_db(transaction=True)
def test_too_large_a_folder_is_refused_before_upload(exp, project, monkeypatch):
    monkeypatch.setenv("STUDIO_SNAPSHOT_MAX_BYTES", "20")
    with counted_requests(exp.workspace._client) as calls, pytest.raises(SnapshotException, match="limit of 20"):
        exp.submit(ScriptRunConfig(source_directory=str(project), script="child.py"))
    assert calls == [] and Snapshot.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_an_ignored_script_or_no_script_is_refused(exp, project):
    (project / ".amlignore").write_text("child.py\n")
    with pytest.raises(ExperimentExecutionException, match="excluded from the snapshot"):
        exp.submit(ScriptRunConfig(source_directory=str(project), script="child.py"))
    with pytest.raises(UserErrorException, match="either script or command"):
        exp.submit(ScriptRunConfig(source_directory=str(project)))


@pytest.mark.django_db(transaction=True)
def test_start_logging_can_snapshot_a_folder(exp, project):
    run = exp.start_logging(snapshot_directory=project)
    sha = run.get_properties()["ContentSnapshotId"]
    assert Snapshot.objects.get().sha256 == sha == run.get_snapshot_id()
