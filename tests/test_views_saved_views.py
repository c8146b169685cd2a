"""Saved custom views: created by one member, opened, renamed, updated and deleted by another."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
from django.utils import timezone

from runs.models import Run, SavedView, Workspace
from runs.services import workspaces
from tests import test_views_support as support
from tests.conftest import make_user

pytestmark = pytest.mark.django_db

EXP = "/w/team-a/experiments/explore-runs/"
STATE = "tag=quality%3Dgreat&sel=1,2&chart=line~loss~step&cols=number,status,m:loss&sort=-m%3Aloss"


@pytest.fixture
def carol(alice):
    """A second member of team-a."""
    user = make_user("carol")
    workspaces.member_add(Workspace.objects.get(name="team-a"), user)
    return user


@pytest.fixture
def exp(alice):
    exp = support.experiment(alice)
    support.run(exp, alice, tags={"quality": "great"}, metrics={"loss": [1.0, 0.4]})
    support.run(exp, alice, tags={"quality": "great"}, metrics={"loss": [1.0, 0.2]})
    return exp


def _save(client, name: str = "best runs", state: str = STATE):
    return client.post(f"{EXP}views/", {"name": name, "state": state})


def test_saving_stores_the_state_and_opens_the_view(exp, alice):
    response = _save(support.signed_in(alice))
    view = SavedView.objects.get()
    assert (view.name, view.created_by, view.workspace.name) == ("best runs", alice, "team-a")
    assert parse_qs(view.state) == {
        "tag": ["quality=great"],
        "sel": ["1,2"],
        "chart": ["line~loss~step"],
        "cols": ["number,status,m:loss"],
        "sort": ["-m:loss"],
    }
    assert response.status_code == 302
    assert parse_qs(urlsplit(response.url).query)["view"] == [str(view.pk)]


def test_another_member_opens_the_view_from_its_own_url(exp, alice, carol):
    _save(support.signed_in(alice))
    view = SavedView.objects.get()
    client = support.signed_in(carol)
    response = client.get(f"{EXP}views/{view.pk}/")
    assert response.status_code == 302
    html = client.get(response.url).content.decode()
    assert "best runs" in html and 'value="quality=great"' in html
    assert "loss by step" in html and 'name="sel" value="2" checked' in html


def test_another_member_renames_updates_and_deletes_it(exp, alice, carol):
    _save(support.signed_in(alice))
    view = SavedView.objects.get()
    client = support.signed_in(carol)
    client.post(f"{EXP}views/{view.pk}/rename/", {"name": "carol's pick"})
    client.post(f"{EXP}views/{view.pk}/update/", {"state": "status=Running&view=999&after=xyz"})
    view.refresh_from_db()
    assert (view.name, view.state, view.updated_by, view.created_by) == ("carol's pick", "status=Running", carol, alice)
    response = client.post(f"{EXP}views/{view.pk}/delete/")
    assert response.status_code == 302 and not SavedView.objects.exists()


def test_a_taken_name_is_refused_with_a_message(exp, alice):
    client = support.signed_in(alice)
    _save(client)
    html = client.get(_save(client, state="q=other").url).content.decode()
    assert SavedView.objects.count() == 1
    assert "already exists" in html


def test_an_empty_name_is_refused(exp, alice):
    client = support.signed_in(alice)
    html = client.get(_save(client, name="  ").url).content.decode()
    assert not SavedView.objects.exists() and "give the view a name" in html


def test_saved_views_are_listed_on_the_experiment_and_workspace_pages(exp, alice, carol):
    _save(support.signed_in(alice))
    client = support.signed_in(carol)
    assert "best runs" in client.get(EXP).content.decode()
    assert "best runs" in client.get("/w/team-a/").content.decode()


def test_a_view_whose_runs_were_deleted_still_opens_and_says_what_is_missing(exp, alice):
    _save(support.signed_in(alice), state="sel=1,2,3&chart=line~loss~step")
    Run.objects.filter(number=2).update(deleted_at=timezone.now())  # soft-deleted (restorable)
    Run.objects.filter(number=1).delete()  # gone for good
    view = SavedView.objects.get()
    client = support.signed_in(alice)
    response = client.get(client.get(f"{EXP}views/{view.pk}/").url)
    html = response.content.decode()
    assert response.status_code == 200
    assert "3 runs in this view are missing" in html
    assert "#1 (no longer exists)" in html and "#2 (deleted)" in html and "#3 (no longer exists)" in html


def test_a_link_to_a_deleted_view_still_shows_its_state(exp, alice):
    html = support.signed_in(alice).get(f"{EXP}?view=4242&q=great").content.decode()
    assert "saved view 4242 no longer exists" in html and 'value="great"' in html


def test_the_view_bar_says_when_the_page_differs_from_the_saved_view(exp, alice):
    client = support.signed_in(alice)
    url = _save(client).url
    assert "modified" not in client.get(url).content.decode()
    assert ">modified<" in client.get(url + "&q=other").content.decode()
