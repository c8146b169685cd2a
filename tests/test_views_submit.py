"""Submitting and resubmitting runs from the browser, and clear messages for bad uploads."""

from __future__ import annotations

import io
import json
import stat
import zipfile

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from runs.access import Principal
from runs.models import Experiment, Run
from runs.services import execution
from tests import test_views_support as support

pytestmark = pytest.mark.django_db

EXP = "/w/team-a/experiments/explore-runs/"
SCRIPT = b"import time\nprint('hello')\n"


@pytest.fixture
def exp(alice):
    return support.experiment(alice)


@pytest.fixture
def client(alice):
    return support.signed_in(alice)


def _post(client, *, files=(), folder=(), folder_paths=None, url=f"{EXP}submit/", **fields):
    data = {"experiment": "explore-runs", "compute_target": "local", "source": "upload", **fields}
    if files:
        data["files"] = list(files)
    if folder:
        data["folder"] = list(folder)
        data["folder_paths"] = json.dumps(folder_paths)
    return client.post(url, data)


def _upload(name: str, content: bytes) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, content)


def test_the_form_preselects_the_workspaces_default_target_and_this_experiment(exp, client):
    html = client.get(f"{EXP}submit/").content.decode()
    assert '<option value="local" selected>' in html
    assert 'value="explore-runs"' in html and "webkitdirectory" in html


def test_a_zip_with_the_script_is_submitted_and_followed_on_the_logs_tab(exp, client):
    zipped = support.zip_of({"hello_with_delay.py": SCRIPT, "data/readme.txt": "x"})
    response = _post(
        client,
        files=[_upload("src.zip", zipped)],
        script="hello_with_delay.py",
        arguments="--epochs 3 --name 'two words'",
        display_name="from the browser",
    )
    run = Run.objects.get()
    assert response.status_code == 302 and response.url == f"/runs/{run.run_id}/logs/"
    assert run.status == "Queued" and run.run_type == "submitted" and run.compute_target == "local"
    assert run.display_name == "from the browser" and run.submitted_by.username == "alice"
    assert run.run_definition["script"] == "hello_with_delay.py"
    assert run.run_definition["arguments"] == ["--epochs", "3", "--name", "two words"]
    assert sorted(execution.snapshot_names(run.snapshot)) == ["data/readme.txt", "hello_with_delay.py"]


def test_a_single_script_file_is_enough_and_is_chosen_as_the_script(exp, client):
    _post(client, files=[_upload("train.py", SCRIPT)])
    run = Run.objects.get()
    assert run.run_definition["script"] == "train.py"


def test_a_folder_keeps_its_layout_without_its_own_name(exp, client):
    _post(
        client,
        folder=[_upload("train.py", SCRIPT), _upload("util.py", b"X = 1\n")],
        folder_paths=["project/train.py", "project/lib/util.py"],
        script="train.py",
    )
    run = Run.objects.get()
    assert sorted(execution.snapshot_names(run.snapshot)) == ["lib/util.py", "train.py"]


def test_a_new_experiment_name_creates_the_experiment(exp, client):
    _post(client, files=[_upload("train.py", SCRIPT)], experiment="brand-new", url="/w/team-a/submit/")
    assert Run.objects.get().experiment.name == "brand-new"
    assert Experiment.objects.filter(name="brand-new").exists()


def _errors(response) -> str:
    assert response.status_code == 200, response.status_code
    assert not Run.objects.exists()
    return response.content.decode()


def test_no_upload_gets_a_clear_message(exp, client):
    assert "nothing was uploaded" in _errors(_post(client))


def test_an_upload_without_a_script_gets_a_clear_message(exp, client):
    html = _errors(_post(client, files=[_upload("src.zip", support.zip_of({"readme.txt": "hi"}))]))
    assert "the upload has no script" in html


def test_a_script_that_is_not_in_the_upload_gets_a_clear_message(exp, client):
    html = _errors(_post(client, files=[_upload("train.py", SCRIPT)], script="other.py"))
    assert "script &#x27;other.py&#x27; is not in the uploaded folder (it holds: train.py)" in html


def test_several_scripts_need_a_choice(exp, client):
    html = _errors(_post(client, files=[_upload("a.py", SCRIPT), _upload("b.py", SCRIPT)]))
    assert "name the script to run; the upload holds several: a.py, b.py" in html


def test_a_too_large_upload_gets_a_clear_message(exp, client, settings):
    settings.STUDIO_SNAPSHOT_MAX_BYTES = 2048
    html = _errors(_post(client, files=[_upload("train.py", SCRIPT + b"#" * 4096)]))
    assert "the limit is 2,048 bytes (STUDIO_SNAPSHOT_MAX_BYTES)" in html


def test_a_zip_that_inflates_past_the_limit_gets_a_clear_message(exp, client, settings):
    settings.STUDIO_SNAPSHOT_MAX_BYTES = 4096
    zipped = support.zip_of({"train.py": SCRIPT, "big.txt": b"0" * 100_000})  # compresses to well under 4 KB
    html = _errors(_post(client, files=[_upload("src.zip", zipped)]))
    assert "unpacks to more than 4096 bytes" in html


@pytest.mark.parametrize(
    ("entry", "message"),
    [("../evil.py", "leaves its folder"), ("/etc/evil.py", "absolute path")],
)
def test_unsafe_paths_in_a_zip_get_a_clear_message(exp, client, entry, message):
    html = _errors(_post(client, files=[_upload("src.zip", support.zip_of({"train.py": SCRIPT, entry: "x"}))]))
    assert message in html


def test_a_symlink_in_a_zip_gets_a_clear_message(exp, client):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("train.py", SCRIPT)
        link = zipfile.ZipInfo("data")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(link, "/etc")
    html = _errors(_post(client, files=[_upload("src.zip", buffer.getvalue())]))
    assert "is a symlink" in html


def test_unsafe_folder_paths_get_a_clear_message(exp, client):
    html = _errors(_post(client, folder=[_upload("train.py", SCRIPT)], folder_paths=["../../train.py"]))
    assert "leaves its folder" in html


def test_a_file_that_is_not_a_zip_but_named_zip_gets_a_clear_message(exp, client):
    assert "is not a valid zip archive" in _errors(_post(client, files=[_upload("src.zip", b"not a zip")]))


def test_unbalanced_quotes_in_arguments_get_a_clear_message(exp, client):
    html = _errors(_post(client, files=[_upload("train.py", SCRIPT)], arguments="--name 'oops"))
    assert "cannot be split like a shell line" in html


def test_resubmit_reuses_the_snapshot_with_edited_arguments(exp, alice, client):
    principal = Principal(alice)
    snapshot = execution.snapshot_store(principal, exp.workspace, io.BytesIO(support.zip_of({"train.py": SCRIPT})))
    first = execution.run_submit(
        principal, exp, {"snapshot": snapshot.sha256, "script": "train.py", "arguments": ["--lr", "0.1"]}
    )
    html = client.get(f"/runs/{first.run_id}/resubmit/").content.decode()
    assert 'value="--lr 0.1"' in html and f'<option value="{first.run_id}" selected>' in html
    response = client.post(
        f"/runs/{first.run_id}/resubmit/",
        {
            "experiment": "explore-runs",
            "compute_target": "local",
            "source": "snapshot",
            "from_run": first.run_id,
            "script": "train.py",
            "arguments": "--lr 0.01",
        },
    )
    second = Run.objects.exclude(pk=first.pk).get()
    assert response.url == f"/runs/{second.run_id}/logs/"
    assert second.snapshot_id == first.snapshot_id and second.run_definition["arguments"] == ["--lr", "0.01"]


def test_resubmit_cannot_borrow_another_workspaces_snapshot(exp, alice, bob):
    principal = Principal(bob)
    theirs = support.experiment(bob, workspace="team-b", name="theirs")
    snapshot = execution.snapshot_store(principal, theirs.workspace, io.BytesIO(support.zip_of({"t.py": SCRIPT})))
    foreign = execution.run_submit(principal, theirs, {"snapshot": snapshot.sha256, "script": "t.py"})
    response = _post(support.signed_in(alice), source="snapshot", from_run=foreign.run_id)
    assert response.status_code == 200 and Run.objects.filter(experiment=exp).count() == 0
    assert "Select a valid choice" in response.content.decode()
