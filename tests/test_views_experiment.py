"""The experiment page: filters, sort, keyset paging, columns, URL state, live rows, escaping."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

import pytest

from runs.access import Principal
from runs.forms import TableState
from runs.models import Run
from runs.services import runs as run_services
from tests import test_views_support as support

pytestmark = pytest.mark.django_db

EXP = "/w/team-a/experiments/explore-runs/"
EVIL = "<script>alert('x')</script> \"quoted\" & 'single'"


@pytest.fixture
def exp(alice):
    return support.experiment(alice)


def _numbers(html: str) -> list[int]:
    return [int(n) for n in re.findall(r'name="sel" value="(\d+)"', html)]


def test_it_lists_runs_newest_first_with_their_details(exp, alice):
    support.run(exp, alice, display_name="one", tags={"quality": "great"}, finish="complete")
    support.run(exp, alice, display_name="two")
    html = support.signed_in(alice).get(EXP).content.decode()
    assert _numbers(html) == [2, 1]
    assert "Completed" in html and "Running" in html and "great" in html and "alice" in html


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("tag=quality=great", [1]),
        ("tag=quality", [2, 1]),
        ("tag=quality=great&tag=fruit=apple", []),
        ("prop=author=azureml-user", [3]),
        ("status=Completed", [1]),
        ("status=Running&status=Canceled", [3, 2]),
        ("q=banana", [2]),
        ("q=GREAT", [1]),
        ("q=quality", [2, 1]),
        ("submitter=alice", [3, 2, 1]),
        ("submitter=nobody", []),
    ],
)
def test_filters_narrow_the_table(exp, alice, query, expected):
    support.run(exp, alice, display_name="apple", tags={"quality": "great"}, finish="complete")
    support.run(exp, alice, description="ripe banana", tags={"quality": "meh"}, finish="cancel")
    support.run(exp, alice, properties={"author": "azureml-user"})
    html = support.signed_in(alice).get(f"{EXP}?{query}").content.decode()
    assert _numbers(html) == expected


def test_child_runs_are_hidden_unless_asked_for(exp, alice):
    parent = support.run(exp, alice, display_name="parent")
    run_services.children_create(Principal(alice), parent, {"count": 2})
    client = support.signed_in(alice)
    assert _numbers(client.get(EXP).content.decode()) == [1]
    assert _numbers(client.get(f"{EXP}?children=1").content.decode()) == [3, 2, 1]


def test_sorting_by_name_and_by_a_metric(exp, alice):
    support.run(exp, alice, display_name="b", metrics={"acc": [0.5]})
    support.run(exp, alice, display_name="c", metrics={"acc": [0.9]})
    support.run(exp, alice, display_name="a")
    client = support.signed_in(alice)
    assert _numbers(client.get(f"{EXP}?sort=name").content.decode()) == [3, 1, 2]
    assert _numbers(client.get(f"{EXP}?sort=-name").content.decode()) == [2, 1, 3]
    assert _numbers(client.get(f"{EXP}?sort=-m:acc").content.decode()) == [2, 1, 3]
    assert _numbers(client.get(f"{EXP}?sort=duration").content.decode())  # sortable, whatever the ties


def _next_link(html: str, rel: str) -> str | None:
    match = re.search(rf'rel="{rel}" href="\?([^"]+)"', html)
    return match.group(1).replace("&amp;", "&") if match else None


@pytest.mark.parametrize("sort", ["-number", "number", "name", "-started", "-m:loss", "m:loss"])
def test_keyset_paging_walks_every_run_once_both_ways(exp, alice, sort):
    for i in range(60):
        # ties in names and metric values, and runs without the metric, all page correctly
        support.run(exp, alice, display_name=f"run-{i % 7}", metrics={"loss": [float(i % 5)]} if i % 4 else None)
    client = support.signed_in(alice)
    pages, query = [], f"sort={sort}&size=25"
    while query:
        html = client.get(f"{EXP}?{query}").content.decode()
        pages.append(_numbers(html))
        query = _next_link(html, "next")
    seen = [n for page in pages for n in page]
    assert sorted(seen) == list(range(1, 61)) and len(pages) == 3
    # ...and back from the last page with "previous"
    html = client.get(f"{EXP}?{_next_link(client.get(f'{EXP}?sort={sort}&size=25').content.decode(), 'next')}")
    back = _next_link(html.content.decode(), "prev")
    assert _numbers(client.get(f"{EXP}?{back}").content.decode()) == pages[0]


@pytest.mark.parametrize("sort", ["duration", "-duration", "status", "-submitter", "target", "-created"])
def test_every_sortable_column_pages_without_gaps(exp, alice, sort):
    for i in range(30):
        support.run(exp, alice, display_name=f"run-{i}", finish=("complete", "fail", "cancel")[i % 3])
    client = support.signed_in(alice)
    seen, query = [], f"sort={sort}&size=25"
    while query:
        html = client.get(f"{EXP}?{query}").content.decode()
        seen += _numbers(html)
        query = _next_link(html, "next")
    assert sorted(seen) == list(range(1, 31))


def test_a_stale_page_link_starts_again_with_a_note(exp, alice):
    support.run(exp, alice)
    html = support.signed_in(alice).get(f"{EXP}?after=garbage").content.decode()
    assert "out of date" in html and _numbers(html) == [1]


def test_chosen_columns_show_metric_last_values_properties_and_tags(exp, alice):
    support.run(exp, alice, properties={"author": "ann"}, tags={"opt": "adam"}, metrics={"loss": [0.9, 0.25]})
    html = support.signed_in(alice).get(f"{EXP}?cols=number,status,m:loss,p:author,t:opt").content.decode()
    assert "loss (last)" in html and "0.25" in html
    assert "author (property)" in html and "ann" in html
    assert "opt (tag)" in html and "adam" in html
    assert "Submitted by" not in html.split("<thead>")[1].split("</thead>")[0]


def test_an_htmx_request_gets_the_results_and_the_canonical_url(exp, alice):
    support.run(exp, alice, tags={"quality": "great"})
    response = support.signed_in(alice).get(
        f"{EXP}?q=&tag=quality%3Dgreat&tag=&new_kind=line&new_metric=&cols_form=1&col=number&col=status",
        HTTP_HX_REQUEST="true",
    )
    body = response.content.decode()
    assert body.lstrip().startswith('<div id="results"') and "<html" not in body
    assert '<tr id="run-' in body and not re.search(r"<tr[^>]*hx-swap-oob", body)  # rows swap in place
    assert 'id="exp-counts" class="stats" hx-swap-oob="true"' in body  # counts refresh out of band
    pushed = urlsplit(response["HX-Push-Url"])
    assert pushed.path == EXP
    assert parse_qs(pushed.query) == {"tag": ["quality=great"], "cols": ["number,status"]}


def test_adding_and_removing_charts_lands_on_a_clean_url(exp, alice):
    client = support.signed_in(alice)
    response = client.get(f"{EXP}?sel=1&new_kind=line&new_metric=loss&new_x=time&new_dims=&add_chart=1")
    assert response.status_code == 302
    state = TableState.parse(_query(response.url))
    assert [c.encode() for c in state.charts] == ["line~loss~time"] and state.sel == (1,)
    response = client.get(f"{response.url}&new_kind=par&new_metric=acc&new_dims=lr,t:opt&add_chart=1")
    state = TableState.parse(_query(response.url))
    assert [c.encode() for c in state.charts] == ["line~loss~time", "par~acc~p:lr~t:opt"]
    response = client.get(f"{response.url}&remove_chart=0")
    assert [c.encode() for c in TableState.parse(_query(response.url)).charts] == ["par~acc~p:lr~t:opt"]


def test_a_chart_without_a_metric_is_refused_with_a_reason(exp, alice):
    html = support.signed_in(alice).get(f"{EXP}?new_kind=line&new_metric=&add_chart=1").content.decode()
    assert "chart not added" in html


def _query(url: str):
    from django.http import QueryDict

    return QueryDict(urlsplit(url).query)


def test_state_round_trips_through_its_query_string():
    from django.http import QueryDict

    raw = (
        "q=x&status=Running&tag=a%3D1&tag=b&prop=p%3D2&submitter=al&children=1&sort=-m%3Aloss"
        "&cols=number%2Cm%3Aloss&sel=3%2C1&chart=line~l%257Eoss~step&chart=bar~acc&size=100"
    )
    state = TableState.parse(QueryDict(raw))
    again = TableState.parse(QueryDict(state.to_query()))
    assert again == state
    assert state.charts[0].metric == "l~oss" and state.tags == (("a", "1"), ("b", None))


def test_live_updates_answer_204_until_a_shown_row_changes(exp, alice):
    running = support.run(exp, alice)
    client = support.signed_in(alice)
    html = client.get(EXP).content.decode()
    poll = re.search(r'id="table-poller" hx-get="([^"]+)"', html).group(1).replace("&amp;", "&")
    assert client.get(poll).status_code == 204
    run_services.run_complete(Principal(alice), Run.objects.get(pk=running.pk))
    response = client.get(poll)
    body = response.content.decode()
    assert response.status_code == 200
    assert f'<tr id="run-{running.pk}" hx-swap-oob="true"' in body and "Completed" in body
    assert 'id="exp-counts" class="stats" hx-swap-oob="true"' in body
    # the new poller no longer watches the finished row
    new_poll = re.search(r'id="table-poller" hx-swap-oob="true" hx-get="([^"]+)"', body).group(1)
    assert "ids=&" in new_poll.replace("&amp;", "&")


def test_live_updates_announce_new_runs_on_the_first_page(exp, alice):
    support.run(exp, alice, finish="complete")
    client = support.signed_in(alice)
    html = client.get(EXP).content.decode()
    poll = re.search(r'id="table-poller" hx-get="([^"]+)"', html).group(1).replace("&amp;", "&")
    assert client.get(poll).status_code == 204
    support.run(exp, alice)
    body = client.get(poll).content.decode()
    assert "1 new run since this page loaded" in body


def test_pages_and_polls_take_a_fixed_number_of_queries(exp, alice):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client = support.signed_in(alice)
    url = f"{EXP}?cols=number,status,tags,m:loss,p:p&sel=1,2"
    client.get(url)  # the first visit also stores the current workspace in the session

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            html = client.get(url).content.decode()
        return len(captured), html

    for i in range(5):
        support.run(exp, alice, tags={"k": str(i)}, properties={"p": str(i)}, metrics={"loss": [float(i)]})
    few, _ = queries()
    for i in range(45):
        support.run(exp, alice, tags={"k": str(i)}, properties={"p": str(i)}, metrics={"loss": [float(i)]})
    many, html = queries()
    assert few == many <= 20
    poll = re.search(r'id="table-poller" hx-get="([^"]+)"', html).group(1).replace("&amp;", "&")
    with CaptureQueriesContext(connection) as captured:
        assert client.get(poll).status_code == 204
    # session, user, experiment, changed rows, changed metric columns, new runs
    assert len(captured) <= 6


def test_tags_names_and_descriptions_are_escaped_everywhere(exp, alice):
    run = support.run(
        exp,
        alice,
        display_name=EVIL,
        description=EVIL,
        tags={EVIL: EVIL},
        properties={"p": EVIL},
        metrics={EVIL: [1.0]},
    )
    client = support.signed_in(alice)
    pages = [
        f"{EXP}?cols=number,name,tags,description,t:{EVIL},p:p&chart=line~{EVIL}~step&sel=1",
        f"{EXP}charts/0/?chart=line~{EVIL}~step&sel=1",
        f"{EXP}charts/0/?chart=bar~{EVIL}&sel=1",
        f"/runs/{run.run_id}/",
        f"/runs/{run.run_id}/metrics/",
        "/search/?q=alert",
    ]
    for url in pages:
        html = client.get(url).content.decode()
        assert "<script>alert(" not in html, url
        assert "&lt;script&gt;alert(" in html or "\\u003Cscript\\u003Ealert(" in html, url
        assert '"quoted"' not in html.replace("&quot;", "#"), url


def test_properties_are_shown_but_no_page_offers_to_change_them(exp, alice):
    run = support.run(exp, alice, properties={"author": "azureml-user"})
    client = support.signed_in(alice)
    for url in [
        EXP,
        f"/runs/{run.run_id}/",
        f"/runs/{run.run_id}/metrics/",
        f"/runs/{run.run_id}/logs/",
        f"/runs/{run.run_id}/files/",
        f"{EXP}submit/",
    ]:
        html = client.get(url).content.decode()
        forms = re.findall(r"<form.*?</form>", html, flags=re.S)
        for form in forms:
            assert "propert" not in form.lower() or 'method="get"' in form, (url, form[:300])
    assert "azureml-user" in client.get(f"/runs/{run.run_id}/").content.decode()
    # no page accepts a write to properties either
    for url in [f"/runs/{run.run_id}/", f"/runs/{run.run_id}/metrics/", EXP]:
        assert client.post(url, {"properties": '{"author": "other"}', "author": "other"}).status_code == 405
    assert run_services.properties_of(run) == {"author": "azureml-user"}


def test_bad_values_in_a_shared_link_are_dropped_with_notes_not_errors(exp, alice):
    support.run(exp, alice)
    html = (
        support.signed_in(alice)
        .get(f"{EXP}?sort=-bogus&size=7&chart=pie~x&chart=line~loss~sideways&sel=a,1&status=Nope&cols=zzz&view=x")
        .content.decode()
    )
    assert "cannot sort by" in html and "unknown status" in html and "chart x axis must be step or time" in html
    assert "not one this page understands" in html and _numbers(html) == [1]
