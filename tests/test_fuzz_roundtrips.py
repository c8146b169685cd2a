"""Tags, properties and metrics come back exactly as they were sent (Hypothesis), and limits hold.

Text is any Unicode a JSON body can carry: emoji, right-to-left scripts,
combining marks, C1 controls, empty strings where allowed. Values exactly at
each documented limit (runs/limits.py) are stored; one past is a 400 naming
the limit, and nothing of the request is stored. Metric values round-trip
bit-exact, NaN and ±inf included; integers are exact up to ±2**53.
"""

from __future__ import annotations

import json
import math
import os
import struct
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runs import limits
from runs.models import MetricBatch, MetricSeries, Run, RunProperty, RunTag

pytestmark = pytest.mark.django_db

EXAMPLES = int(os.environ.get("STUDIO_ROUNDTRIP_EXAMPLES", "40"))
HYPOTHESIS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=os.environ.get("STUDIO_FUZZ_SOAK") != "1",
    database=None,
    suppress_health_check=list(HealthCheck),
)

# What JSON (and so every client) can carry: no lone surrogates. Samples that a plain
# text strategy rarely reaches: emoji, RTL, combining marks, zero-width and C1 controls.
SAMPLES = ["😀", "👩‍👩‍👧", "שלום", "مرحبا", "e\u0301", "\u200b", "\u202e", "\u0085", "ﷺ", "𝕏", "\ufeff", " "]
FRAGMENTS = st.characters(blacklist_categories=("Cs",)) | st.sampled_from(SAMPLES)
# Keys: 1-255 characters, no control characters (C0 or DEL), not only whitespace.
KEY_FRAGMENTS = st.characters(blacklist_categories=("Cs", "Cc")) | st.sampled_from(
    [s for s in SAMPLES if s != "\u0085"]
)
KEYS = st.lists(KEY_FRAGMENTS, min_size=1, max_size=20).map("".join).filter(lambda k: k.strip())
# Values: up to 4,096 characters, empty allowed, anything but NUL.
VALUES = st.lists(FRAGMENTS.filter(lambda c: c != "\x00"), max_size=30).map("".join)
TEXTS = st.lists(FRAGMENTS, max_size=10).map("".join)


@pytest.fixture
def run_id(api):
    api.post("/api/workspaces/team-a/experiments/", {"name": "exp"}, format="json")
    return api.post("/api/workspaces/team-a/experiments/exp/runs/", {}, format="json").json()["run_id"]


def _fresh_run(api) -> str:
    return api.post("/api/workspaces/team-a/experiments/exp/runs/", {}, format="json").json()["run_id"]


# --- tags and properties ------------------------------------------------------------------------------------


@given(tags=st.dictionaries(KEYS, VALUES | st.none(), max_size=6))
@HYPOTHESIS
def test_tags_round_trip(api, run_id, tags):
    run = _fresh_run(api)
    response = api.patch(f"/api/runs/{run}/tags/", tags, format="json")
    assert response.status_code == 200, response.json()
    assert api.get(f"/api/runs/{run}/tags/").json() == tags
    assert api.get(f"/api/runs/{run}/").json()["tags"] == tags


@given(properties=st.dictionaries(KEYS, VALUES, min_size=1, max_size=6))
@HYPOTHESIS
def test_properties_round_trip_and_stay_immutable(api, run_id, properties):
    run = _fresh_run(api)
    assert api.post(f"/api/runs/{run}/properties/", properties, format="json").status_code == 200
    assert api.get(f"/api/runs/{run}/properties/").json() == properties
    # The same values again: a no-op. Another value for a stored key: 409, nothing changes.
    assert api.post(f"/api/runs/{run}/properties/", properties, format="json").status_code == 200
    key = next(iter(properties))
    response = api.post(f"/api/runs/{run}/properties/", {key: properties[key] + "!"}, format="json")
    assert response.status_code == 409 and "immutable" in response.json()["detail"]
    assert api.get(f"/api/runs/{run}/properties/").json() == properties


@given(tags=st.dictionaries(KEYS, VALUES, min_size=1, max_size=3))
@HYPOTHESIS
def test_a_tag_filter_finds_exactly_what_was_tagged(api, run_id, tags):
    run = _fresh_run(api)
    api.patch(f"/api/runs/{run}/tags/", tags, format="json")
    found = api.get("/api/workspaces/team-a/experiments/exp/runs/", {"tags": json.dumps(tags)}).json()["results"]
    assert [r["run_id"] for r in found] == [run]


@pytest.mark.parametrize("char", ["a", "😀", "ש", "e\u0301"[1]], ids=["ascii", "emoji", "rtl", "combining"])
@pytest.mark.parametrize("kind", ["tags", "properties"])
def test_keys_and_values_at_the_limit_are_stored_and_one_past_is_refused(api, run_id, char, kind):
    at_key = char * limits.KEY_MAX
    at_value = char * limits.VALUE_MAX
    send = api.patch if kind == "tags" else api.post
    assert send(f"/api/runs/{run_id}/{kind}/", {at_key: at_value}, format="json").status_code == 200
    assert api.get(f"/api/runs/{run_id}/{kind}/").json() == {at_key: at_value}
    model = RunTag if kind == "tags" else RunProperty
    stored = model.objects.count()
    for body, limit in (({at_key + char: "v"}, limits.KEY_MAX), ({"k2": at_value + char}, limits.VALUE_MAX)):
        response = send(f"/api/runs/{run_id}/{kind}/", body, format="json")
        assert response.status_code == 400 and f"the limit is {limit}" in response.json()["detail"], body.keys()
        assert model.objects.count() == stored


@pytest.mark.parametrize("kind", ["tags", "properties"])
def test_the_count_limit_per_run_holds_exactly(api, run_id, kind):
    send = api.patch if kind == "tags" else api.post
    at = {f"k{i}": "v" for i in range(limits.TAGS_PER_RUN_MAX)}
    assert send(f"/api/runs/{run_id}/{kind}/", at, format="json").status_code == 200
    response = send(f"/api/runs/{run_id}/{kind}/", {"one-more": "v"}, format="json")
    assert response.status_code == 400 and str(limits.TAGS_PER_RUN_MAX) in response.json()["detail"]
    model = RunTag if kind == "tags" else RunProperty
    assert model.objects.filter(run__run_id=run_id).count() == limits.TAGS_PER_RUN_MAX
    response = send(f"/api/runs/{_fresh_run(api)}/{kind}/", {**at, "one-more": "v"}, format="json")
    assert response.status_code == 400 and model.objects.count() == limits.TAGS_PER_RUN_MAX


@pytest.mark.parametrize(
    "key", ["", "   ", "a\x00b", "a\nb", "a\x7fb"], ids=["empty", "blank", "nul", "newline", "del"]
)
def test_a_key_that_is_empty_or_holds_control_characters_is_refused(api, run_id, key):
    response = api.patch(f"/api/runs/{run_id}/tags/", {key: "v"}, format="json")
    assert response.status_code == 400 and "tag key" in response.json()["detail"]
    assert not RunTag.objects.exists()


# --- metrics ---------------------------------------------------------------------------------------------------------

FLOATS = st.floats(allow_nan=True, allow_infinity=True, width=64)
SCALARS = (
    FLOATS
    | st.integers(-(2**53), 2**53)
    | st.sampled_from([2**53, -(2**53), 0, -0.0, 5e-324, 1.7976931348623157e308])
    | st.booleans()
    | st.none()
    | TEXTS
)


def _wire(value):
    if isinstance(value, float) and not math.isfinite(value):
        return {"$float": "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")}
    return value


def _same(sent, got) -> bool:
    if isinstance(sent, float) and not isinstance(sent, bool):
        if not math.isfinite(sent):
            return got == _wire(sent)
        # Bit-exact: -0.0 stays -0.0, subnormals stay subnormal.
        return type(got) is float and struct.pack("<d", got) == struct.pack("<d", sent)
    if isinstance(sent, bool):
        return got is sent
    if isinstance(sent, int):
        return type(got) is int and got == sent
    return got == sent


@given(values=st.lists(SCALARS, min_size=1, max_size=30), name=KEYS)
@HYPOTHESIS
def test_scalar_metrics_round_trip_exactly(api, run_id, values, name):
    run = _fresh_run(api)
    batch = {
        "batch_id": uuid.uuid4().hex,
        "series": [{"name": name, "values": [_wire(v) for v in values], "times": [1.0] * len(values)}],
    }
    response = api.post(f"/api/runs/{run}/metrics/", batch, format="json")
    assert response.status_code == 200, response.json()
    points = api.get(f"/api/runs/{run}/metrics/points/", {"name": name}).json()
    assert points["total"] == len(values) and points["steps"] == list(range(len(values)))
    assert all(_same(s, g) for s, g in zip(values, points["values"], strict=True)), (values, points["values"])


@given(values=st.lists(st.lists(SCALARS, max_size=4) | st.fixed_dictionaries({"a": SCALARS}), min_size=1, max_size=5))
@HYPOTHESIS
def test_list_metrics_round_trip(api, run_id, values):
    run = _fresh_run(api)
    finite = [v for v in values if _finite_json(v)]
    if not finite:
        return
    lists = [v for v in finite if isinstance(v, list)] or [[1]]
    batch = {
        "batch_id": uuid.uuid4().hex,
        "series": [{"name": "l", "kind": "list", "values": lists, "times": [1.0] * len(lists)}],
    }
    response = api.post(f"/api/runs/{run}/metrics/", batch, format="json")
    assert response.status_code == 200, response.json()
    got = api.get(f"/api/runs/{run}/metrics/").json()["l"]
    assert _same_json(got, lists[0] if len(lists) == 1 else lists), (got, lists)


def _same_json(got, sent) -> bool:
    """Equal, except that PostgreSQL's JSON returns a float written in exponent form with no fraction
    (5.295923305351774e+16) as an integer: the same number, another type (see the report)."""
    if isinstance(sent, float) and type(got) is int:
        return float(got) == sent
    if isinstance(sent, list) and isinstance(got, list):
        return len(sent) == len(got) and all(_same_json(g, s) for g, s in zip(got, sent, strict=True))
    if isinstance(sent, dict) and isinstance(got, dict):
        return sent.keys() == got.keys() and all(_same_json(got[k], sent[k]) for k in sent)
    return type(got) is type(sent) and got == sent


def _finite_json(value) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, list):
        return all(_finite_json(v) for v in value)
    if isinstance(value, dict):
        return all(_finite_json(v) for v in value.values())
    return True


@pytest.mark.parametrize("value", [2**53 + 1, -(2**53) - 1, 2**63 - 1])
def test_an_integer_past_2_53_is_refused_naming_the_limit_and_nothing_is_stored(api, run_id, value):
    batch = {"batch_id": "b1", "series": [{"name": "n", "values": [1, value], "times": [1.0, 2.0]}]}
    response = api.post(f"/api/runs/{run_id}/metrics/", batch, format="json")
    assert response.status_code == 400 and "±2**53" in response.json()["detail"]
    assert not MetricBatch.objects.exists() and not MetricSeries.objects.exists()


def test_a_text_metric_value_at_the_limit_is_stored_and_one_past_is_refused(api, run_id):
    at = "😀" * limits.VALUE_MAX
    batch = {"batch_id": "t1", "series": [{"name": "t", "values": [at], "times": [1.0]}]}
    assert api.post(f"/api/runs/{run_id}/metrics/", batch, format="json").status_code == 200
    assert api.get(f"/api/runs/{run_id}/metrics/points/", {"name": "t"}).json()["values"] == [at]
    batch = {"batch_id": "t2", "series": [{"name": "t", "values": [at + "😀"], "times": [1.0]}]}
    response = api.post(f"/api/runs/{run_id}/metrics/", batch, format="json")
    assert response.status_code == 400 and f"the limit is {limits.VALUE_MAX}" in response.json()["detail"]
    assert MetricBatch.objects.count() == 1


def test_a_metric_name_at_the_limit_is_stored_and_one_past_is_refused(api, run_id):
    at = "ש" * limits.KEY_MAX
    batch = {"batch_id": "n1", "series": [{"name": at, "values": [1.0], "times": [1.0]}]}
    assert api.post(f"/api/runs/{run_id}/metrics/", batch, format="json").status_code == 200
    batch = {"batch_id": "n2", "series": [{"name": at + "ש", "values": [1.0], "times": [1.0]}]}
    response = api.post(f"/api/runs/{run_id}/metrics/", batch, format="json")
    assert response.status_code == 400 and f"the limit is {limits.KEY_MAX}" in response.json()["detail"]
    assert list(MetricSeries.objects.values_list("name", flat=True)) == [at]


def test_a_batch_at_the_point_limit_is_stored_and_one_past_is_refused(api, run_id):
    n = limits.POINTS_PER_BATCH_MAX
    batch = {"batch_id": "p1", "series": [{"name": "p", "values": [0.5] * n, "times": [1.0] * n}]}
    assert api.post(f"/api/runs/{run_id}/metrics/", batch, format="json").json()["stored"] == n
    batch = {"batch_id": "p2", "series": [{"name": "p", "values": [0.5] * (n + 1), "times": [1.0] * (n + 1)}]}
    response = api.post(f"/api/runs/{run_id}/metrics/", batch, format="json")
    assert response.status_code == 400 and str(n) in response.json()["detail"]
    assert MetricBatch.objects.count() == 1


@pytest.mark.parametrize("text", ["a\x00b", "\x00"], ids=["inside", "alone"])
def test_a_nul_in_a_text_metric_value_is_refused_or_kept_exactly(api, run_id, text):
    """PostgreSQL's JSON cannot hold \\u0000: it must be a clear 400 there, never a 500."""
    batch = {"batch_id": "z1", "series": [{"name": "z", "values": [text], "times": [1.0]}]}
    response = api.post(f"/api/runs/{run_id}/metrics/", batch, format="json")
    if response.status_code == 200:
        assert api.get(f"/api/runs/{run_id}/metrics/points/", {"name": "z"}).json()["values"] == [text]
    else:
        assert response.status_code == 400 and "NUL" in response.json()["detail"]
        assert not MetricBatch.objects.exists()
    assert Run.objects.count() == 1
