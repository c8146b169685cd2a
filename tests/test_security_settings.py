"""Production settings and response headers.

- DEBUG is off unless STUDIO_DEBUG=1; `manage.py check --deploy --fail-level WARNING` passes with
  the production environment the README documents (and fails without it).
- Pages send X-Content-Type-Options, Referrer-Policy, X-Frame-Options and a Content-Security-Policy
  whose scripts come from 'self' only; no page holds an inline script, an inline event handler or
  an htmx expression that would need eval.
- API responses never include a token (a user's key, a run's key, or their hashes).
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
from django.db import transaction

from tests import test_permission_matrix as matrix

ROOT = Path(__file__).resolve().parent.parent
# README "Production settings": what a deployment behind TLS sets.
PRODUCTION_ENV = {
    "SECRET_KEY": secrets.token_urlsafe(50),
    "ALLOWED_HOSTS": "studio.example.com",
    "CSRF_TRUSTED_ORIGINS": "https://studio.example.com",
    "STUDIO_SECURE": "1",
    "STUDIO_BEHIND_PROXY": "1",
}


def _clean_env(tmp_path, **extra) -> dict:
    """The process environment without any STUDIO_/Django settings this test session may have set."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STUDIO_", "DJANGO_", "SECRET_KEY", "ALLOWED_"))}
    env.pop("CSRF_TRUSTED_ORIGINS", None)
    env.update({"STUDIO_DATA_DIR": str(tmp_path / "data"), "DJANGO_SETTINGS_MODULE": "studio.settings", **extra})
    return env


def _setting(tmp_path, expression: str, **env) -> str:
    code = f"import django; django.setup(); from django.conf import settings; print(repr(({expression},)))"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=_clean_env(tmp_path, **env), capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_debug_is_off_unless_studio_debug_says_so(tmp_path):
    assert _setting(tmp_path, "settings.DEBUG") == "(False,)"
    assert _setting(tmp_path, "settings.DEBUG", STUDIO_DEBUG="1") == "(True,)"


def test_the_secure_settings_follow_studio_secure(tmp_path):
    expression = (
        "settings.SESSION_COOKIE_SECURE, settings.CSRF_COOKIE_SECURE, settings.SECURE_SSL_REDIRECT, "
        "settings.SECURE_HSTS_SECONDS, settings.SECURE_PROXY_SSL_HEADER"
    )
    assert _setting(tmp_path, expression, **PRODUCTION_ENV) == (
        "(True, True, True, 31536000, ('HTTP_X_FORWARDED_PROTO', 'https'))"
    )
    assert _setting(tmp_path, "settings.SESSION_COOKIE_SECURE, settings.SECURE_HSTS_SECONDS") == "(False, 0)"


def _check_deploy(tmp_path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=_clean_env(tmp_path, **env),
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.slow
def test_check_deploy_passes_with_the_documented_production_environment(tmp_path):
    result = _check_deploy(tmp_path, PRODUCTION_ENV)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


@pytest.mark.slow
def test_check_deploy_fails_without_tls_settings(tmp_path):
    """The check above can fail: the same environment without STUDIO_SECURE does."""
    env = {k: v for k, v in PRODUCTION_ENV.items() if k != "STUDIO_SECURE"}
    result = _check_deploy(tmp_path, env)
    assert result.returncode != 0 and "security.W004" in result.stderr + result.stdout


def test_the_readme_documents_the_production_settings():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("### Production settings", 1)[1].split("\n### ", 1)[0]
    for name in ("SECRET_KEY", "ALLOWED_HOSTS", "CSRF_TRUSTED_ORIGINS", "STUDIO_SECURE", "STUDIO_BEHIND_PROXY"):
        assert f"`{name}" in section, name
    assert "check --deploy" in section


# --- headers and pages --------------------------------------------------------------------------------


def _csp(response) -> dict[str, list[str]]:
    policy = response["Content-Security-Policy"]
    return {part.split()[0]: part.split()[1:] for part in policy.split(";") if part.strip()}


class _PageScan(HTMLParser):
    """Scripts, inline handlers and htmx expressions that a script-src 'self' policy would break."""

    def __init__(self):
        super().__init__()
        self.problems: list[str] = []
        self.script_srcs: list[str] = []

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag == "script":
            if attributes.get("type") == "application/json":
                return  # data (json_script), never run
            if not attributes.get("src"):
                self.problems.append("an inline <script>")
            else:
                self.script_srcs.append(attributes["src"])
        for name, value in attrs:
            value = value or ""
            if name.startswith("on"):
                self.problems.append(f"an inline handler {name}= on <{tag}>")
            if name.startswith(("hx-on", "data-hx-on")):
                self.problems.append(f"{name} on <{tag}> (needs eval)")
            if name in ("hx-trigger", "data-hx-trigger") and "[" in value:
                self.problems.append(f"hx-trigger filter {value!r} (needs eval)")
            if name in ("hx-vals", "hx-vars") and ("js:" in value or "javascript:" in value):
                self.problems.append(f"{name}={value!r} (needs eval)")
            if name in ("href", "src", "action") and value.strip().lower().startswith("javascript:"):
                self.problems.append(f"a javascript: URL in {name}")


@pytest.fixture
def world(alice, bob):
    return matrix.World(alice, bob)


def _page_urls(world) -> list[str]:
    """Every studio page that answers a member's GET with HTML, from the permission matrix."""
    urls = []
    for pattern in matrix.url_patterns():
        row = matrix.rule_for(pattern.key)
        if pattern.key.startswith(("runs:", "login", "api:docs")) and "GET" in row.methods:
            urls.append(world.url(pattern, row, "GET"))
    return urls


@pytest.mark.django_db
def test_pages_send_the_security_headers_and_hold_no_script_the_policy_would_block(world):
    pages = _page_urls(world)
    assert len(pages) >= 20
    checked = 0
    for url in pages:
        response = world.send("member", "GET", url, matrix.Row({}))
        if not response.get("Content-Type", "").startswith("text/html"):
            continue
        checked += 1
        assert response["X-Content-Type-Options"] == "nosniff", url
        assert response["Referrer-Policy"] == "same-origin", url
        assert response["X-Frame-Options"] == "DENY", url
        policy = _csp(response)
        assert policy["script-src"] == ["'self'"], (url, policy)
        assert policy["default-src"] == ["'self'"] and policy["object-src"] == ["'none'"], url
        assert policy["frame-ancestors"] == ["'none'"], url
        scan = _PageScan()
        scan.feed(response.content.decode())
        assert not scan.problems, (url, scan.problems)
        for src in scan.script_srcs:
            # This origin, never a CDN: static files, or the API docs' start-up script.
            assert src.startswith("/static/") or src == "/api/docs/?script=", (url, src)
            assert world.send("member", "GET", src, matrix.Row({})).status_code == 200, src
    assert checked >= 15


@pytest.mark.django_db
def test_downloads_keep_their_own_sandbox_policy(world):
    url = f"/runs/{world.values['run_id']}/files/download/?name=outputs/a.txt"
    response = world.send("member", "GET", url, matrix.Row({}))
    assert response["Content-Security-Policy"] == "default-src 'none'; sandbox"


@pytest.mark.django_db
def test_the_api_docs_page_runs_under_the_policy(world):
    page = world.send("member", "GET", "/api/docs/", matrix.Row({}))
    scan = _PageScan()
    scan.feed(page.content.decode())
    assert not scan.problems and len(scan.script_srcs) == 3
    start_up = world.send("member", "GET", "/api/docs/?script=", matrix.Row({}))
    assert start_up.status_code == 200 and start_up["Content-Type"].startswith("application/javascript")


@pytest.mark.django_db
def test_api_responses_never_include_a_token_or_its_hash(world):
    from runs.models import ApiToken, Run

    secrets_ = [*world.keys.values()]
    secrets_ += list(ApiToken.objects.values_list("key_hash", flat=True))
    secrets_ += [h for h in Run.objects.values_list("token_hash", flat=True) if h]
    checked = 0
    for pattern, row, url, method, principal, _code in matrix._cells(world):
        if not (pattern.key.startswith(("api:", "mlflow")) and principal in ("member", "run_token")):
            continue
        with transaction.atomic():
            body = matrix._content(world.send(principal, method, url, row))
            transaction.set_rollback(True)
        checked += 1
        for secret in secrets_:
            assert secret.encode() not in body, f"{method} {url} as {principal} holds a token"
    assert checked > 300


def test_the_policy_allows_scripts_from_this_origin_only():
    from studio.security import CONTENT_SECURITY_POLICY

    directives = dict(re.findall(r"([a-z-]+) ([^;]+)", CONTENT_SECURITY_POLICY))
    assert directives["script-src"] == "'self'"
    assert "unsafe" not in directives["script-src"] and "unsafe-eval" not in CONTENT_SECURITY_POLICY
