"""Acceptance 1 and 3 in real headless Chromium: a custom view shared by URL; text stays text."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from runs.models import Workspace
from runs.services import workspaces
from tests import test_views_support as support
from tests.conftest import make_user
from tests.test_browser_support import launch_chromium, screenshot, sign_in, wait_until

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def browser():
    yield from launch_chromium()


EVIL = '<script>alert("x")</script> "q" \'s\''  # short enough not to be truncated in the table


@pytest.fixture
def team(alice, bob):
    carol = make_user("carol")
    workspaces.member_add(Workspace.objects.get(name="team-a"), carol)
    exp = support.experiment(alice)
    support.run(
        exp,
        alice,
        display_name="sgd",
        tags={"quality": "great"},
        metrics={"loss": [1.0, 0.6, 0.3, 0.2]},
        properties={"learning_rate": "0.1"},
        finish="complete",
    )
    support.run(
        exp,
        alice,
        display_name="adam",
        tags={"quality": "great"},
        metrics={"loss": [1.0, 0.4, 0.2, 0.1]},
        properties={"learning_rate": "0.01"},
        finish="complete",
    )
    support.run(exp, alice, display_name="rmsprop", tags={"quality": "meh"}, metrics={"loss": [1.0, 0.9]})
    support.run(exp, alice, display_name="tricky", tags={"note": EVIL}, properties={"author": EVIL})
    return {"carol": carol, "experiment": exp}


def test_a_saved_custom_view_opens_the_same_for_another_member_and_404s_for_others(live_server, browser, team):
    alice = sign_in(browser, live_server.url, "alice")
    page = alice.page
    page.goto(f"{live_server.url}/")
    page.get_by_role("link", name="explore-runs").click()
    page.wait_for_selector("#runs-body tr")
    screenshot(page, "experiment-page.png")

    page.fill("#f-tag", "quality=great")
    page.press("#f-tag", "Enter")
    page.wait_for_url("**tag=quality%3Dgreat**")
    expect(page.locator("#runs-body tr")).to_have_count(2)
    page.check('input[name="sel"][value="1"]')
    page.wait_for_url("**sel=1**")
    page.check('input[name="sel"][value="2"]')
    wait_until(page, "location.search.includes('sel=2%2C1') || location.search.includes('sel=1%2C2')")

    page.locator("#add-chart summary").click()
    page.fill("#new-metric", "loss")
    page.get_by_role("button", name="Add chart").click()
    page.wait_for_url("**chart=line~loss~step**")
    expect(page.locator(".chart-card .plot .scatterlayer .trace")).to_have_count(2)

    page.get_by_text("Save view as…").click()
    page.fill("#save-view-name", "great runs")
    page.get_by_role("button", name="Save view", exact=True).click()
    page.wait_for_url("**view=**")
    page.wait_for_selector(".chart-card .plot .main-svg")
    shared_url = page.url
    screenshot(page, "custom-view-with-charts.png")
    assert alice.errors == [] and alice.dialogs == []

    carol = sign_in(browser, live_server.url, "carol")
    response = carol.page.goto(shared_url)
    assert response.status == 200
    other = carol.page
    expect(other.locator(".chart-card .plot .scatterlayer .trace")).to_have_count(2)
    assert other.locator(".current-view strong").inner_text() == "great runs"
    assert other.locator('input[name="tag"]').first.input_value() == "quality=great"
    assert other.locator("#runs-body tr").count() == 2
    assert other.locator('input[name="sel"][value="1"]').is_checked()
    assert other.locator('input[name="sel"][value="2"]').is_checked()
    assert other.locator(".chart-title").all_inner_texts() == ["loss by step"]
    assert carol.errors == []

    bob = sign_in(browser, live_server.url, "bob")
    assert bob.page.goto(shared_url).status == 404
    for session in (alice, carol, bob):
        session.close()


def test_tag_and_property_values_with_script_and_quotes_render_as_text(live_server, browser, team):
    session = sign_in(browser, live_server.url, "alice")
    page = session.page
    page.goto(f"{live_server.url}/w/team-a/experiments/explore-runs/?cols=number,name,tags,p:author")
    row = page.locator("#runs-body tr", has_text="tricky")
    assert EVIL in row.locator("td.tags").inner_text()
    assert EVIL in row.inner_text()
    page.get_by_role("link", name="tricky").click()
    page.wait_for_selector("#props-h")
    assert EVIL in page.locator("table.kv").first.inner_text()
    assert EVIL in page.locator("table.kv").nth(1).inner_text()
    # properties are shown, and nothing on the page can change them
    editable = page.locator("input:not([type=hidden]):not([type=search]), textarea, [contenteditable]")
    assert [e.get_attribute("name") for e in editable.all()] == []
    page.goto(f"{live_server.url}/search/?q=tricky")
    assert EVIL in page.locator("#search-results").inner_text()
    assert session.dialogs == [] and session.errors == []
    session.close()


def test_pages_read_without_javascript(live_server, browser, team):
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("#id_username", "alice")
    page.fill("#id_password", support.PASSWORD)
    page.click("button[type=submit]")
    page.goto(f"{live_server.url}/w/team-a/experiments/explore-runs/")
    assert page.locator("#runs-body tr").count() == 4
    page.fill("#f-tag", "quality=great")
    page.get_by_role("button", name="Apply").click()  # a plain GET form
    expect(page.locator("#runs-body tr")).to_have_count(2)
    assert "tag=quality%3Dgreat" in page.url
    page.get_by_role("link", name="adam").click()
    assert "learning_rate" in page.locator("#props-h + table").inner_text()
    context.close()


def test_the_keyboard_reaches_filters_sorting_and_runs(live_server, browser, team):
    session = sign_in(browser, live_server.url, "alice")
    page = session.page
    page.goto(f"{live_server.url}/w/team-a/experiments/explore-runs/")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    page.focus("#f-q")
    page.keyboard.type("adam")
    page.keyboard.press("Enter")
    page.wait_for_url("**q=adam**")
    expect(page.locator("#runs-body tr")).to_have_count(1)
    header = page.get_by_role("link", name=re.compile(r"^Display name\W+sort$"))
    header.focus()
    page.keyboard.press("Enter")
    page.wait_for_url("**sort=-name**")
    session.close()
