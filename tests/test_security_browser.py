"""The Content-Security-Policy in real headless Chromium: pages work and the browser reports no violation.

Charts (plotly), live polling and the state form (htmx), the Logs tab and the API docs (Swagger UI)
all run with scripts from 'self' only; a violation would show in the console as a CSP report.
"""

from __future__ import annotations

import io

import pytest
from playwright.sync_api import expect

from runs.services import files, logs
from tests import test_views_support as support
from tests.test_browser_support import launch_chromium, sign_in, wait_until

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def browser():
    yield from launch_chromium()


def test_pages_run_under_the_policy_without_a_single_violation(live_server, browser, alice):
    exp = support.experiment(alice)
    run = support.run(exp, alice, display_name="sgd", metrics={"loss": [1.0, 0.5, 0.25]})
    support.run(exp, alice, display_name="adam", metrics={"loss": [1.0, 0.4]}, finish="complete")
    logs.log_append(run, logs.DRIVER_LOG, 0, b"epoch 1 <script>alert(1)</script>\n\xff\xfe\n")
    files.file_upload(run, "outputs/a.txt", io.BytesIO(b"text"))

    session = sign_in(browser, live_server.url, "alice")
    page = session.page
    violations: list[str] = []
    page.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)

    base = f"{live_server.url}/w/team-a/experiments/{exp.name}/"
    page.goto(f"{base}?chart=line~loss~step&sel=1,2")
    expect(page.locator(".chart-card .plot .main-svg").first).to_be_visible()
    wait_until(page, "!!window.htmx")
    # The state form applies a change at once (htmx, triggered from studio.js, not an eval'd filter).
    page.locator('input[name="sel"][value="2"]').uncheck()
    wait_until(page, "!location.search.includes('sel=1%2C2') && location.search.includes('sel=1')")

    page.goto(f"{live_server.url}/runs/{run.run_id}/metrics/")
    expect(page.locator(".plot .main-svg").first).to_be_visible()
    page.goto(f"{live_server.url}/runs/{run.run_id}/logs/")
    expect(page.locator("#log-text")).to_contain_text("epoch 1 <script>alert(1)</script>")
    page.goto(f"{live_server.url}/runs/{run.run_id}/")
    page.goto(f"{live_server.url}/api/docs/")
    expect(page.locator("#swagger-ui .info .title")).to_contain_text("Run Studio API")

    assert not violations, violations
    assert not session.errors, session.errors
    assert not session.dialogs, session.dialogs
