"""Signing in, and API tokens created and revoked from the browser."""

from __future__ import annotations

import re

import pytest
from django.test import Client

from runs.models import ApiToken
from runs.services import workspaces
from tests import test_views_support as support

pytestmark = pytest.mark.django_db


def test_signing_in_lands_on_the_users_workspace(alice):
    client = Client()
    response = client.post("/accounts/login/", {"username": "alice", "password": support.PASSWORD}, follow=True)
    assert response.redirect_chain[-1][0] == "/w/team-a/"
    assert "team-a" in response.content.decode()


def test_a_wrong_password_says_so(alice):
    html = Client().post("/accounts/login/", {"username": "alice", "password": "nope"}).content.decode()
    assert "enter a correct username and password" in html


def test_a_token_is_shown_once_and_then_works_for_the_api(alice):
    client = support.signed_in(alice)
    html = client.post("/tokens/", {"name": "laptop <cli>"}).content.decode()
    key = re.search(r'id="new-key" class="key" value="([^"]+)"', html).group(1)
    assert "laptop &lt;cli&gt;" in html and "not shown again" in html
    api = Client(HTTP_AUTHORIZATION=f"Token {key}")
    assert api.get("/api/me/").json()["username"] == "alice"
    assert key not in client.get("/tokens/").content.decode()


def test_revoking_a_token_stops_it_working(alice):
    token, key = workspaces.token_create(alice, "ci")
    client = support.signed_in(alice)
    response = client.post(f"/tokens/{token.pk}/revoke/", follow=True)
    assert "revoked" in response.content.decode()
    assert ApiToken.objects.get(pk=token.pk).revoked_at is not None
    assert Client(HTTP_AUTHORIZATION=f"Token {key}").get("/api/me/").status_code == 401


def test_nobody_revokes_someone_elses_token(alice, bob):
    token, _key = workspaces.token_create(alice, "ci")
    assert support.signed_in(bob).post(f"/tokens/{token.pk}/revoke/").status_code == 404
    assert ApiToken.objects.get(pk=token.pk).revoked_at is None


def test_a_token_name_is_required(alice):
    html = support.signed_in(alice).post("/tokens/", {"name": ""}).content.decode()
    assert "This field is required" in html and not ApiToken.objects.exists()
