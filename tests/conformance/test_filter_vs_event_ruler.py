"""Our filter engine against aws/event-ruler, the matcher that runs EventBridge content filtering
and whose grammar Lambda event filtering uses: the same answer (match, no match, or a rejected
pattern) for random patterns over the whole grammar and random events, for change records, and
for our apps' own filter criteria. event-ruler runs in one JVM (``EventRulerOracle.java``)."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from consumers.runtime.config import discover_apps
from consumers.shared.filtering import InvalidFilterPattern, compile_filter_criteria
from producer_config import load_pipeline
from tests.conformance.event_ruler import EventRuler, OracleMissing
from tests.conformance.strategies import (
    change_record_patterns,
    change_records,
    events,
    maybe_invalid_patterns,
    patterns,
)

REJECTED = "rejected"
def _settings(examples: int) -> settings:
    return settings(max_examples=examples, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.fixture(scope="module")
def event_ruler():
    try:
        oracle = EventRuler()
    except OracleMissing as exc:
        pytest.fail(str(exc))
    yield oracle
    oracle.close()


def _is_data_pattern(pattern: Any) -> bool:
    return type(pattern) is dict and len(pattern) == 1 and "data" in pattern


#: event-ruler sometimes loses a $or alternative that repeats a value of another alternative for
#: the same field, at random (it depends on hash order inside the JVM); it only ever loses
#: matches, so a $or pattern it does not match is asked again this many times
RETRIES_FOR_OR = 16


def reference(event_ruler: EventRuler, pattern_list: list, event: dict) -> bool | str:
    """event-ruler's answer for Filters OR-ed; a Kinesis-style ``{"data": ...}`` pattern is asked
    about ``{"data": event}``, which is what Lambda hands its filter for a Kinesis record."""
    answers = []
    for pattern in pattern_list:
        text = json.dumps(pattern)
        wrapped = json.dumps({"data": event} if _is_data_pattern(pattern) else event)
        answer = event_ruler.ask([text], wrapped)
        retries = RETRIES_FOR_OR if "$or" in text else 0
        while answer is False and retries:
            answer = event_ruler.ask([text], wrapped)
            retries -= 1
        answers.append(answer)
    if any(type(answer) is str for answer in answers):
        return REJECTED
    return any(answers)


def ours(pattern_list: list, event: dict) -> bool | str:
    try:
        compiled = compile_filter_criteria({"Filters": [{"Pattern": json.dumps(p)} for p in pattern_list]})
    except InvalidFilterPattern:
        return REJECTED
    # the event exactly as a consumer gets it: parsed from the payload bytes
    return compiled.matches(orjson.loads(orjson.dumps(event)))


def _same(event_ruler: EventRuler, pattern_list: list, event: dict) -> None:
    expected = reference(event_ruler, pattern_list, event)
    assert ours(pattern_list, event) == expected, f"event-ruler says {expected} for {pattern_list} on {event}"


@_settings(1500)
@given(st.lists(patterns, min_size=1, max_size=3), events)
# $or alternatives replace a field defined before them (event-ruler's expansion)
@example([{"a": [{"suffix": "x"}], "$or": [{"a": [1]}, {"b": ["q"]}]}], {"a": 1})
@example([{"$or": [{"a": [1]}, {"b": ["q"]}], "a": [{"suffix": "x"}]}], {"a": 1})
# exists: false looks only into the array elements chosen by the fields sorted before it
@example([{"b": {"c": [{"exists": False}], "a": ["x"]}}], {"b": [{"c": 1}, {"a": "x"}]})
@example([{"b": {"c": [{"exists": False}], "z": ["x"]}}], {"b": [{"c": 1}, {"z": "x"}]})
# nested arrays are flattened; scalars in an array are not bound to an element
@example([{"b": {"a": ["x"]}}], {"b": [[{"a": "x"}]]})
@example([{"c": ["1"], "z": {"x": ["2"]}}], {"c": ["1", {"x": "2"}], "z": [{"x": "2"}]})
# an IP address in a string matches however it is written; /32 and plain addresses are no CIDR
@example([{"a": ["10.0.0.7"]}], {"a": "010.0.0.07"})
@example([{"a": [{"cidr": "10.0.0.0/8"}]}], {"a": "::ffff:a01:203"})
@example([{"a": [{"cidr": "10.0.0.7/32"}]}], {"a": "10.0.0.7"})
def test_same_answers_as_event_ruler(event_ruler, pattern_list, event):
    _same(event_ruler, pattern_list, event)


@_settings(800)
@given(st.lists(maybe_invalid_patterns, min_size=1, max_size=2), events)
def test_rejects_the_patterns_event_ruler_rejects(event_ruler, pattern_list, event):
    _same(event_ruler, pattern_list, event)


@_settings(1000)
@given(st.lists(change_record_patterns, min_size=1, max_size=2), change_records())
def test_change_records_filtered_like_event_ruler(event_ruler, pattern_list, record):
    _same(event_ruler, pattern_list, record)


_APPS = [app for app in discover_apps(load_pipeline()) if app.filter_criteria]


@pytest.mark.parametrize("app", _APPS, ids=lambda app: app.name)
@_settings(300)
@given(record=change_records())
def test_each_apps_criteria_select_what_event_ruler_selects(event_ruler, app, record):
    # changed_attributes is ours alone (Lambda has no such filter): only the criteria are compared
    pattern_list = [json.loads(f["Pattern"]) if isinstance(f["Pattern"], str) else f["Pattern"] for f in app.filter_criteria["Filters"]]
    _same(event_ruler, pattern_list, record)


@pytest.mark.parametrize(
    "pattern",
    [
        {"$or": [{"b": ["z"]}, {"b": [{"prefix": "x"}, "z"]}]},
        {"$or": [{"b": ["z"]}, {"b": [{"anything-but": "y"}, "z"]}]},
        {"b": ["x"], "$or": [{"b": ["y"]}, {"b": ["x", "y"]}]},
    ],
)
def test_or_alternatives_sharing_a_value_match_as_documented(event_ruler, pattern):
    """event-ruler answers these at random (RETRIES_FOR_OR); as documented, and as event-ruler
    answers for the alternatives given as separate filters, they match ``{"b": "x"}``."""
    event = {"b": "x"}
    assert ours([pattern], event) is True
    assert reference(event_ruler, [{"b": alternative["b"]} for alternative in pattern["$or"]], event) is True
    answers = {event_ruler.ask([json.dumps(pattern)], json.dumps(event)) for _ in range(2 * RETRIES_FOR_OR)}
    assert True in answers
