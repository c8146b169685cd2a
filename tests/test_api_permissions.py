"""Who may touch what, for every endpoint of /api/, generated from the URL configuration.

A new endpoint is covered automatically; one with a path parameter this file
does not know fails the test until someone says what it means.
"""

from __future__ import annotations

import io
import json

import pytest
from django.urls import URLPattern

from runs.api import urls as api_urls
from runs.models import Run
from runs.services import execution
from runs.tokens import hash_key
from tests.conftest import token_client
from tests.e2e import make_zip

pytestmark = pytest.mark.django_db

# Endpoints about the caller, not about a workspace's data.
OWN_DATA = {"schema", "docs", "health", "me", "workspaces"}
METHODS = ("get", "post", "patch", "delete")


def _api_patterns():
    for pattern in api_urls.urlpatterns:
        assert isinstance(pattern, URLPattern), "nested includes need handling here"
        yield pattern


def _methods(pattern: URLPattern) -> list[str]:
    view = pattern.callback.cls
    return [m for m in METHODS if hasattr(view, m)]


@pytest.fixture
def team_a_objects(api):
    """One of everything in team-a: experiment, run (with a child), snapshot, files, logs, metrics."""
    api.post("/api/workspaces/team-a/experiments/", {"name": "exp"}, format="json")
    run = api.post("/api/workspaces/team-a/experiments/exp/runs/", {}, format="json").json()
    run_id = run["run_id"]
    api.post(f"/api/runs/{run_id}/children/", {"count": 1}, format="json")
    api.post(
        f"/api/runs/{run_id}/metrics/",
        {"batch_id": "b", "series": [{"name": "loss", "values": [1.0], "times": [1.0]}]},
        format="json",
    )
    api.generic(
        "POST",
        f"/api/runs/{run_id}/logs/content/?name=driver.txt&offset=0",
        b"secret log",
        content_type="application/octet-stream",
    )
    api.post(
        f"/api/runs/{run_id}/files/", {"name": "outputs/a.txt", "file": io.BytesIO(b"secret file")}, format="multipart"
    )
    sha = api.generic(
        "POST", "/api/workspaces/team-a/snapshots/", make_zip({"a.py": "print(1)"}), content_type="application/zip"
    ).json()["sha256"]
    return {"workspace": "team-a", "experiment": "exp", "run_id": run_id, "sha256": sha, "name": "local"}


def _fill(pattern: URLPattern, values: dict) -> str:
    route = str(pattern.pattern)
    for key in pattern.pattern.converters:
        assert key in values, f"route {route} has a parameter '{key}' this test does not know: add it"
        route = route.replace(f"<str:{key}>", str(values[key]))
    return f"/api/{route}"


QUERY = {
    "run-log-content": "?name=driver.txt&offset=0",
    "run-file-content": "?name=outputs/a.txt",
    "run-metric-points": "?name=loss",
}


def _cases():
    for pattern in _api_patterns():
        if pattern.name in OWN_DATA:
            continue
        for method in _methods(pattern):
            yield pytest.param(pattern, method, id=f"{method.upper()} {pattern.name}")


@pytest.mark.parametrize("pattern, method", list(_cases()))
def test_another_workspaces_member_gets_nothing(pattern, method, team_a_objects, bob_api):
    url = _fill(pattern, team_a_objects) + QUERY.get(pattern.name, "")
    response = getattr(bob_api, method)(url, {}, format="json") if method != "get" else bob_api.get(url)
    assert response.status_code in (403, 404), f"{method.upper()} {url} -> {response.status_code}"
    body = response.content
    for secret in (b"secret", team_a_objects["run_id"].encode(), b"loss"):
        if secret == team_a_objects["run_id"].encode() and secret in url.encode():
            # a 404 message may echo the id that was asked for; it must not add anything else
            continue
        assert secret not in body


@pytest.mark.parametrize("pattern, method", list(_cases()))
def test_anonymous_callers_are_refused(pattern, method, team_a_objects, client):
    url = _fill(pattern, team_a_objects) + QUERY.get(pattern.name, "")
    response = getattr(client, method)(url)
    assert response.status_code in (401, 403), f"{method.upper()} {url} -> {response.status_code}"


def test_own_data_endpoints_show_only_your_workspaces(team_a_objects, bob_api):
    assert bob_api.get("/api/workspaces/").json()[0]["name"] == "team-b"
    assert len(bob_api.get("/api/workspaces/").json()) == 1
    assert bob_api.get("/api/me/").json()["workspaces"] == ["team-b"]


# --- run tokens -----------------------------------------------------------------------------


@pytest.fixture
def tree(api):
    """parent → (me → grandchild), sibling; plus an unrelated run and a run in another workspace."""
    api.post("/api/workspaces/team-a/experiments/", {"name": "exp"}, format="json")
    api.post("/api/workspaces/team-a/experiments/", {"name": "other"}, format="json")
    parent = api.post("/api/workspaces/team-a/experiments/exp/runs/", {}, format="json").json()["run_id"]
    me, sibling = [
        c["run_id"] for c in api.post(f"/api/runs/{parent}/children/", {"count": 2}, format="json").json()["results"]
    ]
    grandchild = api.post(f"/api/runs/{me}/children/", {"count": 1}, format="json").json()["results"][0]["run_id"]
    unrelated = api.post("/api/workspaces/team-a/experiments/exp/runs/", {}, format="json").json()["run_id"]
    elsewhere = api.post("/api/workspaces/team-a/experiments/other/runs/", {}, format="json").json()["run_id"]
    key = "rt_test-" + "x" * 30
    Run.objects.filter(run_id=me).update(token_hash=hash_key(key))
    return {
        "parent": parent,
        "me": me,
        "sibling": sibling,
        "grandchild": grandchild,
        "unrelated": unrelated,
        "elsewhere": elsewhere,
        "client": token_client(key),
    }


def test_a_run_token_reads_its_ancestors_and_descendants_only(tree):
    client = tree["client"]
    for readable in ("me", "parent", "grandchild"):
        assert client.get(f"/api/runs/{tree[readable]}/").status_code == 200, readable
    for hidden in ("sibling", "unrelated", "elsewhere"):
        assert client.get(f"/api/runs/{tree[hidden]}/").status_code == 404, hidden
    listed = {
        r["run_id"]
        for r in client.get("/api/workspaces/team-a/experiments/exp/runs/?include_children=true").json()["results"]
    }
    assert listed == {tree["parent"], tree["me"], tree["grandchild"]}


def test_a_run_token_changes_its_run_and_descendants_only(tree):
    client = tree["client"]
    for writable in ("me", "grandchild"):
        assert client.patch(f"/api/runs/{tree[writable]}/tags/", {"k": "v"}, format="json").status_code == 200
    response = client.patch(f"/api/runs/{tree['parent']}/tags/", {"k": "v"}, format="json")
    assert response.status_code == 403 and "only its own run" in response.json()["detail"]
    assert client.patch(f"/api/runs/{tree['sibling']}/tags/", {"k": "v"}, format="json").status_code == 404
    assert client.post(f"/api/runs/{tree['me']}/children/", {"count": 1}, format="json").status_code == 201


def test_a_run_token_sees_its_experiment_and_compute_targets_but_nothing_else(tree):
    client = tree["client"]
    assert client.get("/api/workspaces/team-a/experiments/exp/").status_code == 200
    assert client.get("/api/workspaces/team-a/experiments/other/").status_code == 404
    assert client.get("/api/workspaces/team-a/computes/").status_code == 200
    assert client.post("/api/workspaces/team-a/computes/", {"name": "x1"}, format="json").status_code == 403
    assert client.post("/api/workspaces/team-a/experiments/", {"name": "new"}, format="json").status_code == 403
    assert client.get("/api/workspaces/team-b/").status_code == 404


def test_a_run_token_cannot_report_for_another_run(tree):
    response = tree["client"].post(f"/api/runs/{tree['grandchild']}/runner/exit/", {"exit_code": 0}, format="json")
    assert response.status_code == 403


def test_only_the_runner_reports_exit_codes(api, tree):
    response = api.post(f"/api/runs/{tree['me']}/runner/exit/", {"exit_code": 0}, format="json")
    assert response.status_code == 403 and "runner" in response.json()["detail"]


def test_a_run_token_stops_working_when_its_run_ends(tree, api):
    api.post(f"/api/runs/{tree['me']}/complete/")
    response = tree["client"].get(f"/api/runs/{tree['me']}/")
    assert response.status_code == 401 and "no longer valid" in response.json()["detail"]


# --- snapshots ----------------------------------------------------------------------------------


def _zip_with(entries: list[tuple[str, bytes, int]]) -> bytes:
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data, mode in entries:
            info = zipfile.ZipInfo(name)
            info.external_attr = mode << 16
            archive.writestr(info, data)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "entries, message",
    [
        ([("../evil.py", b"x", 0o100644)], "leaves its folder"),
        ([("/etc/evil.py", b"x", 0o100644)], "absolute"),
        ([("link", b"/etc/passwd", 0o120777)], "symlink"),
        ([("a/../../b.py", b"x", 0o100644)], "leaves its folder"),
        ([("a.py", b"x", 0o100644), ("a.py", b"y", 0o100644)], "appears twice"),
    ],
)
def test_unsafe_snapshots_are_refused_with_a_clear_error(api, entries, message):
    response = api.generic(
        "POST", "/api/workspaces/team-a/snapshots/", _zip_with(entries), content_type="application/zip"
    )
    assert response.status_code == 400 and message in response.json()["detail"]


def test_a_snapshot_past_the_limit_is_refused_naming_the_limit(api, settings):
    settings.STUDIO_SNAPSHOT_MAX_BYTES = 10_000
    bomb = _zip_with([("big.bin", b"\0" * 50_000, 0o100644)])
    response = api.generic("POST", "/api/workspaces/team-a/snapshots/", bomb, content_type="application/zip")
    assert response.status_code == 413 and "10000 bytes" in response.json()["detail"]


def test_not_a_zip_is_refused(api):
    response = api.generic("POST", "/api/workspaces/team-a/snapshots/", b"hello", content_type="application/zip")
    assert response.status_code == 400 and "not a valid zip" in response.json()["detail"]


def test_identical_snapshots_are_stored_once(api):
    body = make_zip({"a.py": "print(1)"})
    first = api.generic("POST", "/api/workspaces/team-a/snapshots/", body, content_type="application/zip").json()
    second = api.generic("POST", "/api/workspaces/team-a/snapshots/", body, content_type="application/zip").json()
    assert first == second
    assert api.get(f"/api/workspaces/team-a/snapshots/{first['sha256']}/").status_code == 200


def test_unpacking_refuses_what_inflates_past_the_limit(tmp_path):
    """Headers can lie about sizes: extraction counts the real bytes."""
    from runs import snapshots
    from runs.errors import PayloadTooLarge

    archive = tmp_path / "s.zip"
    archive.write_bytes(_zip_with([("big.bin", b"\0" * 50_000, 0o100644)]))
    with pytest.raises(PayloadTooLarge):
        snapshots.extract(archive, tmp_path / "out", max_bytes=10_000)


def test_a_submit_names_a_script_missing_from_the_snapshot(api):
    api.post("/api/workspaces/team-a/experiments/", {"name": "exp"}, format="json")
    sha = api.generic(
        "POST", "/api/workspaces/team-a/snapshots/", make_zip({"a.py": "print(1)"}), content_type="application/zip"
    ).json()["sha256"]
    response = api.post(
        "/api/workspaces/team-a/experiments/exp/submit/", {"snapshot": sha, "script": "b.py"}, format="json"
    )
    assert response.status_code == 400 and "inside source_directory" in response.json()["detail"]
    assert not Run.objects.exists()
    assert json.loads(json.dumps(execution.snapshot_names(execution.Snapshot.objects.get()))) == ["a.py"]


def test_a_revoked_token_stops_working_at_once_in_this_process(alice, alice_key, api):
    from runs.models import ApiToken
    from runs.services import workspaces

    assert api.get("/api/me/").status_code == 200  # now cached
    workspaces.token_revoke(alice, ApiToken.objects.get(user=alice).pk)
    response = api.get("/api/me/")
    assert response.status_code == 401 and "revoked" in response.json()["detail"]
