"""The run page: overview, live header, cancel, metrics, logs tail, outputs and snapshot files."""

from __future__ import annotations

import io
import json
import re
import time
import uuid

import pytest

from runs.access import Principal
from runs.models import Run
from runs.services import execution, files, logs
from runs.services import metrics as metric_services
from runs.services import runs as run_services
from tests import test_views_support as support

pytestmark = pytest.mark.django_db


@pytest.fixture
def exp(alice):
    return support.experiment(alice)


@pytest.fixture
def run(exp, alice):
    return support.run(exp, alice, display_name="trainer", tags={"quality": "great"}, properties={"author": "ann"})


@pytest.fixture
def client(alice):
    return support.signed_in(alice)


def test_overview_shows_details_properties_tags_and_the_child_tree(run, alice, client):
    principal = Principal(alice)
    [child] = run_services.children_create(principal, run, {"tag_key": "fruit", "tag_values": ["apple"]})
    [grandchild] = run_services.children_create(principal, child, {"count": 1})
    run_services.run_complete(principal, grandchild)
    html = client.get(f"/runs/{run.run_id}/").content.decode()
    assert run.run_id in html and "trainer" in html and "read-only" in html
    assert "author" in html and "ann" in html and "quality" in html and "great" in html
    tree = html.split('id="children-h"')[1]
    assert f'href="/runs/{child.run_id}/"' in tree and f'href="/runs/{grandchild.run_id}/"' in tree
    assert tree.index(child.run_id) < tree.index(grandchild.run_id) and "Completed" in tree
    child_html = client.get(f"/runs/{child.run_id}/").content.decode()
    assert f'href="/runs/{run.run_id}/"' in child_html  # the parent link


def test_the_header_polls_only_while_the_run_is_active_and_answers_204_until_it_changes(run, alice, client):
    html = client.get(f"/runs/{run.run_id}/").content.decode()
    live = re.search(r'id="run-header" class="run-header" hx-get="([^"]+)"', html).group(1).replace("&amp;", "&")
    assert client.get(live).status_code == 204
    run_services.run_complete(Principal(alice), Run.objects.get(pk=run.pk))
    response = client.get(live)
    body = response.content.decode()
    assert response.status_code == 200 and "Completed" in body
    assert "hx-trigger" not in body.split(">", 1)[0]  # the new header no longer polls
    assert "Cancel run" not in body


def test_cancel_from_htmx_returns_the_new_header(run, client):
    response = client.post(f"/runs/{run.run_id}/cancel/", {"tab": "logs"}, HTTP_HX_REQUEST="true")
    body = response.content.decode()
    assert response.status_code == 200 and body.lstrip().startswith('<section id="run-header"')
    assert "Canceled" in body and "Cancel run" not in body
    assert Run.objects.get(pk=run.pk).status == "Canceled"


def test_cancelling_a_finished_run_says_why_it_cannot(run, alice, client):
    run_services.run_complete(Principal(alice), run)
    response = client.post(f"/runs/{run.run_id}/cancel/", follow=True)
    assert "Completed is a final status" in response.content.decode()


def test_the_cancel_confirmation_page_works_without_javascript(run, client):
    html = client.get(f"/runs/{run.run_id}/cancel/").content.decode()
    assert "Cancel run #1?" in html and 'method="post"' in html


def test_metrics_tab_shows_charts_tables_and_lists(run, client):
    now = time.time()
    metric_services.metrics_ingest(
        run,
        {
            "batch_id": uuid.uuid4().hex,
            "series": [
                {"name": "loss", "values": [0.9, 0.5], "times": [now, now + 1]},
                {"name": "scores", "kind": "table", "values": [{"epoch": [1, 2], "acc": [0.5, 0.7]}], "times": [now]},
                {"name": "row", "kind": "row", "values": [{"a": 1, "b": "<b>x</b>"}], "times": [now]},
                {"name": "fruits", "kind": "list", "values": [["apple", "pear"]], "times": [now]},
            ],
        },
    )
    html = client.get(f"/runs/{run.run_id}/metrics/").content.decode()
    assert "/metrics/chart/?name=loss" in html
    assert '<th scope="col">epoch</th>' in html and "0.7" in html
    assert "&lt;b&gt;x&lt;/b&gt;" in html and "pear" in html


def test_a_large_series_is_charted_downsampled(run, client):
    now = time.time()
    n = 50_000
    metric_services.metrics_ingest(
        run,
        {
            "batch_id": "big",
            "series": [{"name": "loss", "values": [float(i % 997) for i in range(n)], "times": [now] * n}],
        },
    )
    html = client.get(f"/runs/{run.run_id}/metrics/chart/?name=loss").content.decode()
    figure = json.loads(re.search(r'<script id="metric-0" type="application/json">(.*?)</script>', html).group(1))
    assert len(figure["data"][0]["x"]) <= 2000 and figure["points"] == n and figure["downsampled"]
    assert max(figure["data"][0]["y"]) == 996.0  # the spikes survive downsampling
    assert "reduced on the server" in html


def test_logs_tab_shows_the_log_escaped_and_tails_from_the_offset(run, client):
    logs.log_append(run, logs.DRIVER_LOG, 0, b"epoch 1 <script>x</script>\n")
    html = client.get(f"/runs/{run.run_id}/logs/").content.decode()
    assert "epoch 1 &lt;script&gt;x&lt;/script&gt;" in html
    poll = re.search(r'id="log-poller" hx-get="([^"]+)"', html).group(1).replace("&amp;", "&")
    assert client.get(poll).status_code == 204
    logs.log_append(run, logs.DRIVER_LOG, 27, b"epoch 2\n")
    response = client.get(poll)
    body = response.content.decode()
    assert response.status_code == 200 and body.endswith("epoch 2\n")
    assert "offset=35" in body and 'hx-swap-oob="true"' in body


def test_the_tail_never_splits_a_character_and_stops_when_the_run_ends(run, alice, client):
    text = "ok ✓\n".encode()
    logs.log_append(run, logs.DRIVER_LOG, 0, text[:5])  # ends inside the 3-byte check mark
    url = f"/runs/{run.run_id}/logs/tail/?name={logs.DRIVER_LOG}&offset=0"
    body = client.get(url).content.decode()
    assert body.endswith("ok ") and "offset=3" in body
    logs.log_append(run, logs.DRIVER_LOG, 5, text[5:])
    body = client.get(f"/runs/{run.run_id}/logs/tail/?name={logs.DRIVER_LOG}&offset=3").content.decode()
    assert body.endswith("✓\n")
    run_services.run_complete(Principal(alice), run)
    response = client.get(f"/runs/{run.run_id}/logs/tail/?name={logs.DRIVER_LOG}&offset={len(text)}")
    assert response.status_code == 286 and "log is complete" in response.content.decode()


def test_the_logs_tab_lists_the_driver_diagnostic_and_error_logs_and_downloads_whole(run, client):
    for name in (logs.DRIVER_LOG, logs.DIAGNOSTIC_LOG, logs.ERROR_LOG):
        logs.log_append(run, name, 0, f"{name} says hi\n".encode() * 20_000)
    html = client.get(f"/runs/{run.run_id}/logs/?name={logs.ERROR_LOG}").content.decode()
    assert "Driver log" in html and "Diagnostic log" in html and "Error log" in html
    assert "last 256 KB" in html
    response = client.get(f"/runs/{run.run_id}/logs/download/?name={logs.ERROR_LOG}")
    assert response["Content-Disposition"].startswith("attachment")
    assert b"".join(response.streaming_content) == f"{logs.ERROR_LOG} says hi\n".encode() * 20_000


def test_when_the_run_ends_the_tail_refreshes_the_log_tabs(run, alice, client):
    """A tab opened while the run was active learns of logs written at the end (the error log)."""
    logs.log_append(run, logs.DRIVER_LOG, 0, b"working\n")
    html = client.get(f"/runs/{run.run_id}/logs/").content.decode()
    assert "Error log" not in html
    logs.log_append(run, logs.ERROR_LOG, 0, b"exit code: 1\n")
    run_services.run_fail(Principal(alice), run, error_details="boom")
    response = client.get(f"/runs/{run.run_id}/logs/tail/?name={logs.DRIVER_LOG}&offset=8")
    body = response.content.decode()
    assert response.status_code == 286
    assert 'id="log-tabs"' in body and 'hx-swap-oob="true"' in body and "Error log" in body


def test_a_log_name_that_leaves_its_folder_is_refused(run, client):
    assert client.get(f"/runs/{run.run_id}/logs/download/?name=../../etc/passwd").status_code == 400


def test_output_files_are_listed_viewed_and_downloaded_safely(run, client):
    files.file_upload(run, "outputs/notes.txt", io.BytesIO(b"<script>bad()</script>"))
    files.file_upload(run, "outputs/model.bin", io.BytesIO(b"\x00\x01binary"))
    files.file_upload(run, "outputs/page.html", io.BytesIO(b"<html><script>bad()</script></html>"))
    html = client.get(f"/runs/{run.run_id}/files/").content.decode()
    assert "outputs/notes.txt" in html and "outputs/model.bin" in html
    view = client.get(f"/runs/{run.run_id}/files/view/?name=outputs/notes.txt").content.decode()
    assert "&lt;script&gt;bad()&lt;/script&gt;" in view
    assert "binary" in client.get(f"/runs/{run.run_id}/files/view/?name=outputs/model.bin").content.decode()
    response = client.get(f"/runs/{run.run_id}/files/download/?name=outputs/page.html&inline=1")
    assert response["Content-Disposition"].startswith("attachment")  # never rendered as a studio page
    assert response["Content-Type"] == "application/octet-stream"
    assert "sandbox" in response["Content-Security-Policy"]


def test_images_are_served_inline_only_as_images(run, client):
    files.file_upload(run, "plot.png", io.BytesIO(b"\x89PNG\r\n\x1a\nfake"), origin="image")
    response = client.get(f"/runs/{run.run_id}/files/download/?name=plot.png&inline=1")
    assert response["Content-Type"] == "image/png" and response["Content-Disposition"].startswith("inline")


def test_the_snapshot_is_listed_viewed_and_downloaded(exp, alice, client):
    principal = Principal(alice)
    zipped = support.zip_of({"train.py": "print('<hi>')\n", "lib/util.py": "X = 1\n"})
    snapshot = execution.snapshot_store(principal, exp.workspace, io.BytesIO(zipped))
    submitted = execution.run_submit(principal, exp, {"snapshot": snapshot.sha256, "script": "train.py"})
    html = client.get(f"/runs/{submitted.run_id}/files/").content.decode()
    assert "lib/util.py" in html and "train.py" in html
    view = client.get(f"/runs/{submitted.run_id}/snapshot/view/?name=train.py").content.decode()
    assert "print(&#x27;&lt;hi&gt;&#x27;)" in view
    whole = client.get(f"/runs/{submitted.run_id}/snapshot/download/")
    assert b"".join(whole.streaming_content) == zipped
    one = client.get(f"/runs/{submitted.run_id}/snapshot/download/?name=lib/util.py")
    assert one.content == b"X = 1\n" and "util.py" in one["Content-Disposition"]
    assert client.get(f"/runs/{submitted.run_id}/snapshot/view/?name=nope.py").status_code == 404


def test_an_active_run_without_logs_yet_tails_its_driver_log(run, client):
    html = client.get(f"/runs/{run.run_id}/logs/").content.decode()
    poll = re.search(r'id="log-poller" hx-get="([^"]+)"', html).group(1).replace("&amp;", "&")
    assert f"name={logs.DRIVER_LOG}&offset=0" in poll
    assert client.get(poll).status_code == 204  # nothing yet, keep polling
    logs.log_append(run, logs.DRIVER_LOG, 0, b"first line\n")
    assert client.get(poll).content.decode().endswith("first line\n")


def test_a_log_shown_from_its_middle_starts_at_a_whole_character(run, client):
    from runs import selectors_pages

    text, skipped, used = selectors_pages.decode_log("✓ok".encode()[1:], at_start=False)
    assert (text, skipped, used) == ("ok", 2, 4)


def test_image_metrics_show_the_logged_pictures(run, client):
    files.file_upload(run, "images/confusion/1.png", io.BytesIO(b"\x89PNG\r\n\x1a\nfake"), origin="image")
    metric_services.metrics_ingest(
        run,
        {
            "batch_id": "img",
            "series": [
                {
                    "name": "confusion",
                    "kind": "image",
                    "values": [{"path": "images/confusion/1.png"}],
                    "times": [time.time()],
                }
            ],
        },
    )
    html = client.get(f"/runs/{run.run_id}/metrics/").content.decode()
    src = re.search(r'<img src="([^"]+)"', html).group(1).replace("&amp;", "&")
    assert "name=images/confusion/1.png" in src.replace("%2F", "/") and "inline=1" in src
    assert client.get(src)["Content-Type"] == "image/png"


def test_the_metrics_tab_loads_plotly_from_the_pinned_package_on_this_origin(run, client):
    # plotly.js is not in the repository; it is served from the installed `plotly` package.
    page = client.get(f"/runs/{run.run_id}/metrics/").content.decode()
    src = re.search(r'<script src="(/static/vendor/plotly-py-[^"]+/plotly\.min\.js)"', page).group(1)
    script = client.get(src)
    assert script.status_code == 200
    assert b"plotly.js v2." in b"".join(script.streaming_content if script.streaming else [script.content])[:200]
