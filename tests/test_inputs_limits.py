"""Hostile inputs: each is refused with a clear error naming the limit, or stored safely; never a 500.

Bodies past STUDIO_MAX_REQUEST_BYTES (JSON, multipart fields, raw log bytes) in the
REST API, the MLflow API and the pages; JSON nested 100,000 deep; zip bombs; unsafe
file and log names; log bytes that are not UTF-8; thousands of query parameters;
invalid UTF-8 and lone surrogates in JSON and in query strings.
"""

from __future__ import annotations

import io
import json
import random
import zipfile

import pytest

from runs.models import LogFile, MetricBatch, Run, RunFile, RunTag, Snapshot
from tests import test_views_support as support

pytestmark = pytest.mark.django_db

LIMIT = 64 * 1024  # STUDIO_MAX_REQUEST_BYTES for these tests, so a body past it stays small


@pytest.fixture
def small_limit(settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = LIMIT
    return LIMIT


@pytest.fixture
def run_id(api):
    api.post("/api/workspaces/team-a/experiments/", {"name": "exp"}, format="json")
    return api.post("/api/workspaces/team-a/experiments/exp/runs/", {}, format="json").json()["run_id"]


def _json(response) -> dict:
    assert response["Content-Type"].startswith("application/json"), response["Content-Type"]
    return response.json()


def _names_the_limit(message: str) -> bool:
    return "STUDIO_MAX_REQUEST_BYTES" in message and str(LIMIT) in message


# --- bodies past STUDIO_MAX_REQUEST_BYTES ------------------------------------------------------------


def test_a_json_body_past_the_limit_is_413_naming_it(api, run_id, small_limit):
    body = json.dumps({"big": "x" * (LIMIT + 1)})
    response = api.generic("PATCH", f"/api/runs/{run_id}/tags/", body, content_type="application/json")
    assert response.status_code == 413 and _names_the_limit(_json(response)["detail"])
    assert not RunTag.objects.exists()


def test_a_metric_batch_past_the_limit_is_413_and_stores_nothing(api, run_id, small_limit):
    values = [0.5] * (LIMIT // 3)
    batch = {"batch_id": "big", "series": [{"name": "loss", "values": values, "times": [1.0] * len(values)}]}
    response = api.post(f"/api/runs/{run_id}/metrics/", batch, format="json")
    assert response.status_code == 413 and _names_the_limit(_json(response)["detail"])
    assert not MetricBatch.objects.exists()


def test_a_json_body_within_the_limit_is_accepted(api, run_id, small_limit):
    response = api.patch(f"/api/runs/{run_id}/tags/", {"k": "x" * 4000}, format="json")
    assert response.status_code == 200


def test_raw_log_bytes_past_the_limit_are_413(api, run_id, small_limit):
    url = f"/api/runs/{run_id}/logs/content/?name=driver.txt&offset=0"
    response = api.generic("POST", url, b"x" * (LIMIT + 1), content_type="application/octet-stream")
    assert response.status_code == 413 and _names_the_limit(_json(response)["detail"])
    assert not LogFile.objects.exists()


def test_a_multipart_field_past_the_limit_is_413(api, run_id, small_limit):
    response = api.post(
        f"/api/runs/{run_id}/files/",
        {"name": "n" * (LIMIT + 1), "file": io.BytesIO(b"data")},
        format="multipart",
    )
    assert response.status_code == 413 and _names_the_limit(_json(response)["detail"])
    assert not RunFile.objects.exists()


def test_an_uploaded_file_is_not_held_to_the_json_limit(api, run_id, small_limit):
    """Files stream to disk; their own limit is STUDIO_FILE_MAX_BYTES."""
    big = io.BytesIO(b"\0" * (LIMIT * 4))
    response = api.post(f"/api/runs/{run_id}/files/", {"name": "outputs/big.bin", "file": big}, format="multipart")
    assert response.status_code == 201 and response.json()["size"] == LIMIT * 4


def test_a_snapshot_zip_is_not_held_to_the_json_limit(api, small_limit):
    archive = support.zip_of({"noise.bin": random.Random(1).randbytes(LIMIT * 2)})  # incompressible
    assert len(archive) > LIMIT
    response = api.generic("POST", "/api/workspaces/team-a/snapshots/", archive, content_type="application/zip")
    assert response.status_code == 201


def test_an_mlflow_body_past_the_limit_is_refused_naming_it_not_a_500(alice_key, client, small_limit):
    body = json.dumps({"name": "x" * (LIMIT + 1)})
    response = client.post(
        "/api/2.0/mlflow/experiments/create",
        body,
        content_type="application/json",
        headers={"Authorization": f"Bearer {alice_key}"},
    )
    # The MLflow client retries 5xx for minutes: a body that will never fit must not get one.
    assert response.status_code == 413, response.content
    error = _json(response)
    assert error["error_code"] == "INVALID_PARAMETER_VALUE" and _names_the_limit(error["message"])


def test_a_page_form_past_the_limit_is_413_naming_it(alice, small_limit):
    page = support.signed_in(alice)
    response = page.post("/tokens/", {"name": "x" * (LIMIT + 1)})
    assert response.status_code == 413
    assert _names_the_limit(response.content.decode())


# --- deeply nested JSON ----------------------------------------------------------------------------------

DEEP = "[" * 100_000 + "]" * 100_000


def test_json_nested_100000_deep_is_a_400_in_the_api(api, run_id):
    response = api.generic("PATCH", f"/api/runs/{run_id}/tags/", DEEP, content_type="application/json")
    assert response.status_code == 400 and "malformed JSON" in _json(response)["detail"]


def test_json_nested_100000_deep_is_a_400_in_the_mlflow_api(alice_key, client):
    response = client.post(
        "/api/2.0/mlflow/runs/search",
        DEEP,
        content_type="application/json",
        headers={"Authorization": f"Bearer {alice_key}"},
    )
    assert response.status_code == 400 and _json(response)["error_code"] == "BAD_REQUEST"


@pytest.mark.parametrize("depth", [2_000, 100_000])
def test_a_deeply_nested_tags_filter_in_the_query_string_is_a_400(api, run_id, depth):
    nested = "[" * depth + "]" * depth
    response = api.get("/api/workspaces/team-a/experiments/exp/runs/", {"tags": nested})
    assert response.status_code == 400 and "tags" in _json(response)["detail"]


def test_deeply_nested_folder_paths_on_the_submit_page_are_a_form_error(alice):
    support.experiment(alice, name="exp")
    page = support.signed_in(alice)
    archive = io.BytesIO(support.zip_of({"train.py": "print(1)\n"}))
    archive.name = "src.zip"
    response = page.post(
        "/w/team-a/submit/",
        {
            "experiment": "exp",
            "compute_target": "local",
            "source": "upload",
            "script": "train.py",
            "folder": archive,
            "folder_paths": "[" * 5000 + "]" * 5000,
        },
    )
    # The folder's paths are the browser's hint; unreadable ones fall back to the files' own names.
    assert response.status_code == 302, response.content[:500]
    assert Run.objects.get().run_definition["script"] == "train.py"


# --- zip bombs -----------------------------------------------------------------------------------------------


def _deflated(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def test_a_high_ratio_zip_is_refused_naming_the_limit(api, settings):
    settings.STUDIO_SNAPSHOT_MAX_BYTES = 1024 * 1024
    bomb = _deflated({"zeros.bin": b"\0" * (20 * 1024 * 1024)})
    assert len(bomb) < 64 * 1024  # ~1000:1
    response = api.generic("POST", "/api/workspaces/team-a/snapshots/", bomb, content_type="application/zip")
    assert response.status_code == 413
    assert "STUDIO_SNAPSHOT_MAX_BYTES" in response.json()["detail"] or "1048576" in response.json()["detail"]
    assert not Snapshot.objects.exists()


def test_a_zip_of_many_tiny_files_is_refused_naming_the_limit(api, settings):
    settings.STUDIO_SNAPSHOT_MAX_FILES = 100
    many = _deflated({f"f{i}.txt": b"" for i in range(101)})
    response = api.generic("POST", "/api/workspaces/team-a/snapshots/", many, content_type="application/zip")
    assert response.status_code in (400, 413) and "100" in response.json()["detail"]
    assert not Snapshot.objects.exists()


def test_a_nested_zip_is_stored_as_one_file_and_never_unpacked(api, settings, tmp_path):
    from runs import snapshots
    from runs.services import execution

    settings.STUDIO_SNAPSHOT_MAX_BYTES = 1024 * 1024
    inner = _deflated({"zeros.bin": b"\0" * (20 * 1024 * 1024)})
    outer = _deflated({"train.py": b"print(1)\n", "data/inner.zip": inner})
    response = api.generic("POST", "/api/workspaces/team-a/snapshots/", outer, content_type="application/zip")
    assert response.status_code == 201
    snapshot = Snapshot.objects.get()
    assert sorted(execution.snapshot_names(snapshot)) == ["data/inner.zip", "train.py"]
    snapshots.extract(execution.snapshot_path(snapshot.sha256), tmp_path / "out", max_bytes=1024 * 1024)
    assert (tmp_path / "out" / "data" / "inner.zip").read_bytes() == inner


# --- file and log names ----------------------------------------------------------------------------------------

BAD_NAMES = {
    "../escape.txt": "leaves its folder",
    "a/../../escape.txt": "leaves its folder",
    "/etc/passwd": "absolute",
    "a\x00b.txt": "control characters",
    "a\x1bb.txt": "control characters",
    "a\nb.txt": "control characters",
    "a\\b.txt": "backslash",
    "x" * 300 + ".txt": "longer than 255 bytes",
    "d/" * 600 + "f.txt": "the limit is 1024",
}


@pytest.mark.parametrize("name", list(BAD_NAMES), ids=lambda n: repr(n[:20]))
def test_an_unsafe_file_name_is_refused_clearly(api, run_id, name):
    response = api.post(f"/api/runs/{run_id}/files/", {"name": name, "file": io.BytesIO(b"x")}, format="multipart")
    assert response.status_code == 400 and BAD_NAMES[name] in response.json()["detail"]
    assert not RunFile.objects.exists()


@pytest.mark.parametrize("name", list(BAD_NAMES), ids=lambda n: repr(n[:20]))
def test_an_unsafe_log_name_is_refused_clearly(api, run_id, name):
    response = api.generic(
        "POST",
        f"/api/runs/{run_id}/logs/content/?offset=0",
        b"x",
        content_type="application/octet-stream",
        QUERY_STRING=f"offset=0&name={_quote(name)}",
    )
    # A NUL anywhere in an address is refused before the view (studio.request_limits).
    expected = "NUL character" if "\x00" in name else BAD_NAMES[name]
    assert response.status_code == 400 and expected in response.json()["detail"]
    assert not LogFile.objects.exists()


@pytest.mark.parametrize("name", ["../escape.txt", "a\x00b.txt", "x" * 300], ids=["dotdot", "nul", "long"])
def test_an_unsafe_artifact_name_is_refused_clearly_by_the_mlflow_api(alice_key, api, run_id, client, name):
    from runs.models import Experiment

    exp_id = Experiment.objects.get(name="exp").pk
    response = client.generic(
        "PUT",
        f"/api/2.0/mlflow-artifacts/artifacts/{exp_id}/{run_id}/artifacts/{_quote(name)}",
        b"x",
        content_type="application/octet-stream",
        headers={"Authorization": f"Bearer {alice_key}"},
    )
    assert response.status_code in (400, 404) and _json(response)["error_code"] != "INTERNAL_ERROR"
    assert not RunFile.objects.exists()


@pytest.mark.parametrize("name", ["../x", "a\x00b", "\x1b[31m"], ids=["dotdot", "nul", "escape"])
def test_an_unsafe_name_in_a_page_address_is_a_400(alice, name):
    exp = support.experiment(alice)
    run = support.run(exp, alice)
    page = support.signed_in(alice)
    for view in ("logs/tail", "logs/download", "files/view", "files/download"):
        response = page.get(f"/runs/{run.run_id}/{view}/", {"name": name})
        assert response.status_code in (400, 404), (view, response.status_code)


def _quote(text: str) -> str:
    from urllib.parse import quote

    return quote(text, safe="/")


# --- log bytes that are not UTF-8 --------------------------------------------------------------------------------

NOT_UTF8 = b"ok \xff\xfe bad \xc3\x28 half \xe2\x82 end <script>alert(1)</script>\n"


def test_log_bytes_that_are_not_utf8_are_stored_byte_exact_and_shown_safely(api, alice, run_id):
    url = f"/api/runs/{run_id}/logs/content/?name=driver.txt&offset=0"
    assert api.generic("POST", url, NOT_UTF8, content_type="application/octet-stream").status_code == 200
    assert api.get(f"/api/runs/{run_id}/logs/content/?name=driver.txt").content == NOT_UTF8
    page = support.signed_in(alice)
    response = page.get(f"/runs/{run_id}/logs/", {"name": "driver.txt"})
    assert response.status_code == 200
    html = response.content.decode("utf-8")
    assert "ok \ufffd\ufffd bad" in html and "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;" in html
    tail = page.get(f"/runs/{run_id}/logs/tail/", {"name": "driver.txt", "offset": 0})
    assert tail.status_code in (200, 286) and "<script>alert(1)" not in tail.content.decode("utf-8")
    download = page.get(f"/runs/{run_id}/logs/download/", {"name": "driver.txt"})
    assert b"".join(download.streaming_content) == NOT_UTF8


# --- query strings ---------------------------------------------------------------------------------------------------


def test_a_huge_number_of_query_parameters_is_a_clear_400(api, run_id, settings):
    query = "&".join(f"p{i}=1" for i in range(settings.DATA_UPLOAD_MAX_NUMBER_FIELDS + 1))
    response = api.get(f"/api/workspaces/team-a/experiments/exp/runs/?{query}")
    assert response.status_code == 400
    assert str(settings.DATA_UPLOAD_MAX_NUMBER_FIELDS) in _json(response)["detail"]


def test_a_huge_number_of_query_parameters_on_a_page_is_a_clear_400(alice, settings):
    support.experiment(alice)
    page = support.signed_in(alice)
    query = "&".join(f"p{i}=1" for i in range(settings.DATA_UPLOAD_MAX_NUMBER_FIELDS + 1))
    response = page.get(f"/w/team-a/experiments/explore-runs/?{query}")
    assert response.status_code == 400 and str(settings.DATA_UPLOAD_MAX_NUMBER_FIELDS) in response.content.decode()


@pytest.mark.parametrize(
    "query",
    ["q=%ff%fe", "q=%ed%a0%80", "tags=%ff", "submitted_by=%c3%28", "status=%ff", "q=a%00b", "submitted_by=%00"],
)
def test_invalid_utf8_and_nul_in_query_strings_are_never_a_500(api, run_id, query):
    response = api.get(f"/api/workspaces/team-a/experiments/exp/runs/?{query}")
    assert response.status_code in (200, 400), (query, response.status_code, response.content[:200])


@pytest.mark.parametrize("path", ["/api/runs/%ff/", "/api/runs/a%00b/", "/api/workspaces/%ed%a0%80/", "/runs/%ff/"])
def test_invalid_utf8_and_nul_in_paths_are_never_a_500(api, alice, path):
    client = api if path.startswith("/api/") else support.signed_in(alice)
    response = client.get(path)
    assert response.status_code in (400, 404), (path, response.status_code)


@pytest.mark.parametrize(
    "filter_",
    ['{"\\ud800": "x"}', '"\\udfff"', '{"k": "\\ud800"}', '{"a\\u0000": "b"}', '"\\u0000"'],
    ids=["surrogate-key", "surrogate-string", "surrogate-value", "nul-key", "nul-string"],
)
def test_lone_surrogates_and_nul_in_a_json_filter_are_a_400(api, run_id, filter_):
    response = api.get("/api/workspaces/team-a/experiments/exp/runs/", {"tags": filter_})
    assert response.status_code in (200, 400), response.content[:300]


@pytest.mark.parametrize(
    "body",
    [b'{"k": "\xff"}', b'{"\xc3\x28": "v"}', b'{"k": "\\ud800"}', b'{"k": "a\\u0000b"}'],
    ids=["bad-byte-value", "bad-byte-key", "lone-surrogate", "nul"],
)
def test_invalid_utf8_surrogates_and_nul_in_json_strings_are_a_400(api, run_id, body):
    response = api.generic("PATCH", f"/api/runs/{run_id}/tags/", body, content_type="application/json")
    assert response.status_code == 400, response.content[:300]
    assert not RunTag.objects.exists()
    assert Run.objects.count() == 1


@pytest.mark.parametrize("body", [b'{"name": "\xff"}', b'{"name": "\\ud800"}'], ids=["bad-byte", "lone-surrogate"])
def test_invalid_utf8_in_mlflow_json_is_a_400(alice_key, client, body):
    response = client.post(
        "/api/2.0/mlflow/experiments/create",
        body,
        content_type="application/json",
        headers={"Authorization": f"Bearer {alice_key}"},
    )
    assert response.status_code == 400 and _json(response)["error_code"] in ("BAD_REQUEST", "INVALID_PARAMETER_VALUE")


@pytest.mark.parametrize("value", ["a\x00b", "\ud800"], ids=["nul", "lone-surrogate"])
def test_a_page_link_whose_cursor_holds_nul_or_a_surrogate_is_out_of_date_not_a_500(alice, value):
    import base64

    exp = support.experiment(alice)
    support.run(exp, alice)
    raw = json.dumps(["v", value, 1]).encode()
    cursor = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    from runs.errors import InvalidInput
    from runs.selectors_pages import _decode_cursor

    with pytest.raises(InvalidInput):
        _decode_cursor(cursor)
    response = support.signed_in(alice).get(f"/w/team-a/experiments/{exp.name}/", {"after": cursor, "sort": "name"})
    assert response.status_code == 200
    assert "page link is out of date" in response.content.decode()


def test_a_nul_in_an_address_is_refused_at_the_door_for_pages_and_both_apis(api, alice, alice_key, client):
    assert api.get("/api/runs/a%00b/").json()["detail"].startswith("the address contains a NUL")
    mlflow = client.get("/api/2.0/mlflow/runs/get?run_id=a%00b", headers={"Authorization": f"Bearer {alice_key}"})
    assert mlflow.status_code == 400 and mlflow.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    page = support.signed_in(alice).get("/search/?q=%00")
    assert page.status_code == 400 and "NUL" in page.content.decode()


# --- NUL characters inside JSON bodies (PostgreSQL stores none: each must be a 400, never a 500) ----------------


def test_a_nul_in_a_list_metric_is_a_400(api, run_id):
    batch = {"batch_id": "n", "series": [{"name": "l", "kind": "list", "values": [["a\x00"]], "times": [1.0]}]}
    response = api.post(f"/api/runs/{run_id}/metrics/", batch, format="json")
    assert response.status_code == 400 and "NUL" in response.json()["detail"]
    assert not MetricBatch.objects.exists()


def test_a_nul_in_fail_details_is_a_400(api, run_id):
    response = api.post(f"/api/runs/{run_id}/fail/", {"error_details": {"message": "m", "x": ["\x00"]}}, format="json")
    assert response.status_code == 400 and "NUL" in response.json()["detail"]
    assert Run.objects.get(run_id=run_id).status == "Running"


@pytest.mark.parametrize(
    "field", [{"arguments": ["a\x00"]}, {"environment_variables": {"K": "\x00"}}], ids=["arguments", "environment"]
)
def test_a_nul_in_a_submitted_command_line_is_a_400(api, run_id, field):
    sha = api.generic(
        "POST", "/api/workspaces/team-a/snapshots/", support.zip_of({"a.py": ""}), content_type="application/zip"
    ).json()["sha256"]
    body = {"snapshot": sha, "script": "a.py", **field}
    response = api.post("/api/workspaces/team-a/experiments/exp/submit/", body, format="json")
    assert response.status_code == 400 and "NUL" in response.json()["detail"]
    assert Run.objects.count() == 1


def test_a_log_tail_with_nul_bytes_in_an_exit_report_is_kept_readable(api, run_id):
    from runs.tokens import hash_key
    from tests.conftest import token_client

    key = "rt_inputs-" + "n" * 30
    Run.objects.filter(run_id=run_id).update(token_hash=hash_key(key), run_type=Run.Type.SUBMITTED)
    report = {"exit_code": 3, "reason": "crash\x00", "log_tail": "last line\x00\x00 of junk"}
    response = token_client(key).post(f"/api/runs/{run_id}/runner/exit/", report, format="json")
    assert response.status_code == 200 and response.json()["status"] == "Failed"
    assert "last line\ufffd\ufffd of junk" in Run.objects.get(run_id=run_id).error["error"]["message"]


def test_removing_a_tag_key_that_holds_a_nul_is_a_400(api, run_id):
    # Found by schemathesis on PostgreSQL: a 500 (the key is only looked up, which PostgreSQL refuses too).
    assert api.patch(f"/api/runs/{run_id}/tags/", {"k": "v"}, format="json").status_code == 200
    response = api.post(f"/api/runs/{run_id}/tags/remove/", {"keys": ["k\x00"]}, format="json")
    assert response.status_code == 400 and "tag key" in response.json()["detail"]
    assert RunTag.objects.filter(key="k").exists()


def test_the_text_backslash_u0000_is_not_mistaken_for_a_nul(api, run_id):
    response = api.patch(f"/api/runs/{run_id}/tags/", {"k": "\\u0000"}, format="json")
    assert response.status_code == 200 and response.json()["k"] == "\\u0000"
