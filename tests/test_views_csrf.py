"""CSRF: every state-changing form and htmx request needs the token; a POST without it is refused."""

from __future__ import annotations

import io
import re

import pytest
from django.test import Client

from runs.access import Principal
from runs.models import ApiToken, Run, SavedView
from runs.services import execution, saved_views, workspaces
from tests import test_views_support as support

pytestmark = pytest.mark.django_db

EXP = "/w/team-a/experiments/explore-runs/"


@pytest.fixture
def world(alice):
    exp = support.experiment(alice)
    principal = Principal(alice)
    run = support.run(exp, alice)
    snapshot = execution.snapshot_store(principal, exp.workspace, io.BytesIO(support.zip_of({"t.py": "print(1)"})))
    submitted = execution.run_submit(principal, exp, {"snapshot": snapshot.sha256, "script": "t.py"})
    view = saved_views.view_create(principal, exp, "v", "q=a")
    token, _key = workspaces.token_create(alice, "laptop")
    return {"run": run, "submitted": submitted, "view": view, "token": token}


def _writes(world) -> list[tuple[str, dict]]:
    view, run = world["view"].pk, world["run"].run_id
    return [
        (f"/runs/{run}/cancel/", {}),
        (f"{EXP}views/", {"name": "new", "state": ""}),
        (f"{EXP}views/{view}/rename/", {"name": "renamed"}),
        (f"{EXP}views/{view}/update/", {"state": "q=b"}),
        (f"{EXP}views/{view}/delete/", {}),
        ("/tokens/", {"name": "another"}),
        (f"/tokens/{world['token'].pk}/revoke/", {}),
        (
            f"{EXP}submit/",
            {
                "experiment": "explore-runs",
                "compute_target": "local",
                "source": "snapshot",
                "from_run": world["submitted"].run_id,
            },
        ),
        (
            f"/runs/{world['submitted'].run_id}/resubmit/",
            {
                "experiment": "explore-runs",
                "compute_target": "local",
                "source": "snapshot",
                "from_run": world["submitted"].run_id,
            },
        ),
        ("/accounts/logout/", {}),
    ]


def _snapshot():
    return (
        list(Run.objects.order_by("pk").values_list("status", flat=True)),
        list(SavedView.objects.values_list("name", "state")),
        list(ApiToken.objects.values_list("name", "revoked_at")),
    )


def test_every_write_without_the_token_is_refused_and_changes_nothing(world, alice):
    client = support.signed_in(alice, enforce_csrf=True)
    before = _snapshot()
    for url, data in _writes(world):
        response = client.post(url, data)
        assert response.status_code == 403, url
        response = client.post(url, data, HTTP_HX_REQUEST="true")
        assert response.status_code == 403, url
    assert _snapshot() == before


def test_the_same_writes_succeed_with_the_token_from_a_form_or_the_htmx_header(world, alice):
    client = support.signed_in(alice, enforce_csrf=True)
    html = client.get(f"/runs/{world['run'].run_id}/").content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html).group(1)
    header = re.search(r'hx-headers=\'\{"X-CSRFToken": "([^"]+)"\}\'', html).group(1)
    response = client.post(f"/runs/{world['run'].run_id}/cancel/", HTTP_HX_REQUEST="true", HTTP_X_CSRFTOKEN=header)
    assert response.status_code == 200 and Run.objects.get(pk=world["run"].pk).status == "Canceled"
    response = client.post(f"{EXP}views/", {"name": "new", "state": "", "csrfmiddlewaretoken": token})
    assert response.status_code == 302 and SavedView.objects.filter(name="new").exists()


def test_every_post_form_on_every_page_carries_the_token(world, alice):
    client = support.signed_in(alice)
    run = world["run"].run_id
    pages = [
        "/w/team-a/",
        EXP,
        f"{EXP}?view={world['view'].pk}",
        f"{EXP}submit/",
        f"/runs/{run}/",
        f"/runs/{run}/logs/",
        f"/runs/{run}/metrics/",
        f"/runs/{run}/files/",
        f"/runs/{run}/cancel/",
        f"/runs/{world['submitted'].run_id}/resubmit/",
        "/tokens/",
        "/search/?q=a",
    ]
    forms_seen = 0
    for url in pages:
        html = client.get(url).content.decode()
        for form in re.findall(r"<form\b[^>]*>.*?</form>", html, flags=re.S):
            if 'method="post"' in form.split(">", 1)[0]:
                forms_seen += 1
                assert 'name="csrfmiddlewaretoken"' in form, (url, form[:200])
        if "hx-post" in html:
            assert 'hx-headers=\'{"X-CSRFToken": "' in html, url
    assert forms_seen >= 10


def test_signing_in_needs_the_token_too(alice):
    client = Client(enforce_csrf_checks=True)
    response = client.post("/accounts/login/", {"username": "alice", "password": support.PASSWORD})
    assert response.status_code == 403
