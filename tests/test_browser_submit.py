"""Acceptance 2 in real headless Chromium with a real Celery worker and runner.

hello_with_delay.py is submitted to `local` from the Submit run form; the Logs tab
shows each printed line within 2 s without a reload; Cancel stops the script's
processes and the badge reads Canceled, again without a reload, on the run page and in
the experiment page's table open in another tab.
"""

from __future__ import annotations

import re
import time

import pytest
from playwright.sync_api import expect

from runs.models import Run, RunEvent
from tests import test_views_support as support
from tests.e2e import group_alive
from tests.test_browser_support import launch_chromium, screenshot, sign_in, wait_until

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

# Each line carries the time it was printed, so the page can measure how late it shows it.
HELLO_WITH_DELAY = """\
import time
for i in range(300):
    print(f"line {i} printed at {time.time():.3f}", flush=True)
    time.sleep(1)
"""

# Runs in the page: records, for every new line, how long after its printing it appeared.
WATCH_LATENCY = """
() => {
  window.__latencies = [];
  const seen = new Set();
  const box = document.getElementById("log-text");
  const scan = () => {
    for (const m of box.textContent.matchAll(/line (\\d+) printed at ([\\d.]+)/g)) {
      if (!seen.has(m[1])) { seen.add(m[1]); window.__latencies.push(Date.now() / 1000 - parseFloat(m[2])); }
    }
  };
  scan();
  window.__latencies = [];  // lines already on the page when watching began do not count
  new MutationObserver(scan).observe(box, {childList: true, subtree: true, characterData: true});
}
"""


@pytest.fixture(scope="module")
def browser():
    yield from launch_chromium()


def _script_pid(run: Run) -> int:
    for reason in RunEvent.objects.filter(run=run).values_list("reason", flat=True):
        if match := re.search(r"script started \(pid (\d+)\)", reason):
            return int(match.group(1))
    raise AssertionError("the runner never reported the script's pid")


def test_submit_from_the_browser_tail_the_log_live_and_cancel(live_server, browser, alice, local_worker, tmp_path):
    support.experiment(alice)
    script = tmp_path / "hello_with_delay.py"
    script.write_text(HELLO_WITH_DELAY)

    session = sign_in(browser, live_server.url, "alice")
    page = session.page
    page.goto(f"{live_server.url}/w/team-a/experiments/explore-runs/")
    page.get_by_role("link", name="Submit run").click()
    assert page.get_by_label("Compute target").input_value() == "local"  # the workspace default
    page.set_input_files("#id_files", str(script))
    page.get_by_label("Script").fill("hello_with_delay.py")
    page.get_by_role("button", name="Submit run").click()
    page.wait_for_url("**/logs/")
    run = Run.objects.get()
    assert run.run_definition["script"] == "hello_with_delay.py" and run.compute_target == "local"

    page.evaluate("window.__sameDocument = true")  # gone if anything reloads the page
    expect(page.locator("#log-text")).to_contain_text("line 0 printed", timeout=60_000)
    page.evaluate(WATCH_LATENCY)
    wait_until(page, "window.__latencies.length >= 4", timeout=15)
    latencies = page.evaluate("window.__latencies")
    assert max(latencies) < 2.0, latencies
    expect(page.locator("#run-status")).to_contain_text("Running")
    screenshot(page, "run-logs-tab.png")

    # A second tab on the experiment page: its row ticks and follows the run without reloading.
    table = session.context.new_page()
    table.goto(f"{live_server.url}/w/team-a/experiments/explore-runs/")
    table.evaluate("window.__sameDocument = true")
    row = table.locator(f"#run-{run.pk}")
    expect(row.locator(".badge")).to_have_text("Running")
    duration = row.locator(".duration")
    first = duration.inner_text()
    expect(duration).not_to_have_text(first, timeout=3_000)  # the duration ticks while it runs

    pid = _script_pid(run)
    assert group_alive(pid)
    page.bring_to_front()
    page.get_by_text("Cancel run", exact=True).click()
    page.get_by_role("button", name="Yes, cancel run").click()
    expect(page.locator("#run-status")).to_have_text("Canceled", timeout=30_000)
    assert page.evaluate("window.__sameDocument") is True
    deadline = time.monotonic() + 10
    while group_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not group_alive(pid), "the script's process group is still alive"
    assert Run.objects.get(pk=run.pk).status == "Canceled"
    expect(page.get_by_text("Cancel run", exact=True)).to_have_count(0)
    expect(page.locator("#log-state")).to_contain_text("log is complete", timeout=10_000)
    expect(row.locator(".badge")).to_have_text("Canceled", timeout=10_000)  # the table's live poll
    assert table.evaluate("window.__sameDocument") is True
    screenshot(page, "run-logs-tab-canceled.png")
    assert session.errors == []
    session.close()
