"""Every studio page, for a member, a member of another workspace, and an anonymous visitor.

Members see their workspace; anyone else gets 404 (never 403, so names of other teams'
workspaces, experiments and runs cannot be probed); anonymous visitors are sent to sign in.
"""

from __future__ import annotations

import io

import pytest
from django.test import Client

from runs.access import Principal
from runs.models import SavedView
from runs.services import execution, files, logs, saved_views
from tests import test_views_support as support

pytestmark = pytest.mark.django_db

EXP = "/w/team-a/experiments/explore-runs"


@pytest.fixture
def world(alice, bob):
    """team-a (alice) holds an experiment with an interactive run, a submitted run, a log, a file and a view."""
    exp = support.experiment(alice)
    interactive = support.run(exp, alice, display_name="first", metrics={"loss": [1.0, 0.5]})
    logs.log_append(interactive, logs.DRIVER_LOG, 0, b"hello\n")
    files.file_upload(interactive, "outputs/model.txt", io.BytesIO(b"weights"))
    principal = Principal(alice)
    snapshot = execution.snapshot_store(
        principal, exp.workspace, io.BytesIO(support.zip_of({"train.py": "print('hi')\n"}))
    )
    submitted = execution.run_submit(principal, exp, {"snapshot": snapshot.sha256, "script": "train.py"})
    view = saved_views.view_create(principal, exp, "mine", "q=first")
    return {"run": interactive, "submitted": submitted, "view": view}


def _pages(world) -> list[str]:
    run = world["run"].run_id
    sub = world["submitted"].run_id
    view = world["view"].pk
    return [
        "/w/team-a/",
        "/w/team-a/submit/",
        f"{EXP}/",
        f"{EXP}/?chart=line~loss~step&sel=1",
        f"{EXP}/live/?since=0&ids={world['run'].pk}",
        f"{EXP}/charts/0/?chart=line~loss~step",
        f"{EXP}/submit/",
        f"{EXP}/views/{view}/",
        f"/runs/{run}/",
        f"/runs/{run}/metrics/",
        f"/runs/{run}/metrics/chart/?name=loss",
        f"/runs/{run}/logs/",
        f"/runs/{run}/logs/tail/?name={logs.DRIVER_LOG}&offset=0",
        f"/runs/{run}/logs/download/?name={logs.DRIVER_LOG}",
        f"/runs/{run}/files/",
        f"/runs/{run}/files/view/?name=outputs/model.txt",
        f"/runs/{run}/files/download/?name=outputs/model.txt",
        f"/runs/{run}/live/?since=0",
        f"/runs/{run}/cancel/",
        f"/runs/{sub}/resubmit/",
        f"/runs/{sub}/snapshot/view/?name=train.py",
        f"/runs/{sub}/snapshot/download/",
        f"/runs/{sub}/snapshot/download/?name=train.py",
    ]


def test_a_member_can_open_every_page(world, alice):
    client = support.signed_in(alice)
    for url in _pages(world):
        response = client.get(url)
        assert response.status_code in (200, 302), (url, response.status_code)
        if response.status_code == 302:
            assert "/accounts/login/" not in response["Location"], url


def test_a_member_of_another_workspace_gets_404_everywhere(world, bob):
    client = support.signed_in(bob)
    for url in _pages(world):
        assert client.get(url).status_code == 404, url


def test_anonymous_visitors_are_sent_to_sign_in(world):
    client = Client()
    for url in [*_pages(world), "/", "/search/?q=first", "/tokens/"]:
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith("/accounts/login/?next="), url


def test_an_htmx_request_without_a_session_is_redirected_whole(world):
    response = Client().get(
        f"{EXP}/live/?since=0", HTTP_HX_REQUEST="true", HTTP_HX_CURRENT_URL=f"http://testserver{EXP}/"
    )
    assert response.status_code == 204
    assert response["HX-Redirect"].startswith("/accounts/login/?next=")


@pytest.mark.parametrize(
    "action",
    ["cancel", "view_create", "view_rename", "view_update", "view_delete", "submit"],
)
def test_writes_to_another_workspace_are_404_and_change_nothing(world, bob, action):
    client = support.signed_in(bob)
    run, view = world["run"], world["view"]
    url, data = {
        "cancel": (f"/runs/{run.run_id}/cancel/", {}),
        "view_create": (f"{EXP}/views/", {"name": "bobs", "state": ""}),
        "view_rename": (f"{EXP}/views/{view.pk}/rename/", {"name": "bobs"}),
        "view_update": (f"{EXP}/views/{view.pk}/update/", {"state": "q=x"}),
        "view_delete": (f"{EXP}/views/{view.pk}/delete/", {}),
        "submit": (f"{EXP}/submit/", {"experiment": "explore-runs", "compute_target": "local"}),
    }[action]
    assert client.post(url, data).status_code == 404
    run.refresh_from_db()
    assert run.status == "Running"
    assert list(SavedView.objects.values_list("name", "state")) == [("mine", "q=first")]


def test_search_and_the_switcher_show_only_the_users_workspaces(world, bob):
    client = support.signed_in(bob)
    body = client.get("/search/?q=first").content.decode()
    assert "No runs match" in body and world["run"].run_id not in body
    assert "first" in support.signed_in(world["run"].submitted_by).get("/search/?q=first").content.decode()
    page = client.get("/w/team-b/").content.decode()
    assert "team-b" in page and "team-a" not in page


def test_home_opens_the_last_workspace_used(alice):
    from runs.services import workspaces

    workspaces.workspace_create("team-c", alice)
    client = support.signed_in(alice)
    assert client.get("/").url == "/w/team-a/"
    client.get("/w/team-c/")
    assert client.get("/").url == "/w/team-c/"


def test_a_user_without_workspaces_is_told_what_to_do(db):
    from tests.conftest import make_user

    loner = make_user("loner")
    response = support.signed_in(loner).get("/")
    assert response.status_code == 200
    assert "not a member of any workspace" in response.content.decode()


def test_cancel_is_offered_only_while_the_run_is_active(world, alice):
    client = support.signed_in(alice)
    run = world["run"]
    assert "Cancel run" in client.get(f"/runs/{run.run_id}/").content.decode()
    client.post(f"/runs/{run.run_id}/cancel/")
    run.refresh_from_db()
    assert run.status == "Canceled"
    assert "Cancel run" not in client.get(f"/runs/{run.run_id}/").content.decode()
