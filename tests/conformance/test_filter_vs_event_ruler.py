"""Our filter engine against aws/event-ruler, the matcher that runs EventBridge content filtering
and whose grammar Lambda event filtering uses: the same answer (match, no match, or a rejected
pattern) for random patterns over the whole grammar and random events, for change records, and
for our apps' own filter criteria. event-ruler runs in one JVM (``EventRulerOracle.java``)."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, example, given, reject, settings
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
    return settings(
        max_examples=examples, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
    )


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


class Inconsistent(Exception):
    """event-ruler answers differently when the order of OR-ed things changes."""


def _reordered(pattern: Any) -> Any:
    """The same pattern with every value list and every ``$or`` in reverse order: lists whose
    order means nothing (they are OR-ed), so any engine must give the same answer for both."""
    out = {}
    for key, value in pattern.items():
        if type(value) is dict:
            out[key] = _reordered(value)
        elif key == "$or" and type(value) is list:
            out[key] = [_reordered(branch) if type(branch) is dict else branch for branch in reversed(value)]
        elif type(value) is list:
            out[key] = value[::-1]
        else:
            out[key] = value
    return out


def _ask(event_ruler: EventRuler, pattern: Any, event: str) -> bool | str:
    text = json.dumps(pattern)
    answer = event_ruler.ask([text], event)
    retries = RETRIES_FOR_OR if "$or" in text else 0
    while answer is False and retries:
        answer = event_ruler.ask([text], event)
        retries -= 1
    return answer


def reference(event_ruler: EventRuler, pattern_list: list, event: dict) -> bool | str:
    """event-ruler's answer for Filters OR-ed; a Kinesis-style ``{"data": ...}`` pattern is asked
    about ``{"data": event}``, which is what Lambda hands its filter for a Kinesis record.

    Each pattern is asked as written and with its OR-ed lists reversed; raises ``Inconsistent``
    when the two answers differ (event-ruler has order-dependent defects, see
    ``test_where_event_ruler_contradicts_itself``)."""
    answers = []
    for pattern in pattern_list:
        wrapped = json.dumps({"data": event} if _is_data_pattern(pattern) else event)
        if type(pattern) is not dict:
            answers.append(_ask(event_ruler, pattern, wrapped))
            continue
        both = {_ask(event_ruler, variant, wrapped) for variant in (pattern, _reordered(pattern))}
        if len(both) > 1 and not all(type(answer) is str for answer in both):
            raise Inconsistent(f"event-ruler answers {both} for {pattern} and its reordering")
        answers.append(both.pop())
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
    try:
        expected = reference(event_ruler, pattern_list, event)
    except Inconsistent:
        reject()  # no reference answer here; the known cases have tests of their own
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


#: numeric operands as JSON text (json.dumps writes none of the refused ones): underflows,
#: more digits than a double holds, and their exact neighbours. Left out: operands whose
#: ``Double.toString`` changed in JDK 19 (``1e23``, ``1e-323``: older JDKs refuse them, we take
#: them, see consumers.shared.filtering._numbers), and 1.7976931348623157e308 under ``>``, on
#: which event-ruler 2.1.0 fails with an ArrayIndexOutOfBoundsException.
NUMERIC_OPERANDS = (
    "1E-325",
    "-1E-325",
    "2.5e-324",
    "5e-324",
    "4.9e-324",
    "1e-320",
    "0E-400",
    "-0.0",
    "0.1",
    "1E+2",
    "1.50000000000000000000",
    "1.0000000000000001",
    "0.30000000000000000000001",
    "9007199254740992",
    "9007199254740993",
    "123456789012345678901234567890",
    "1.7976931348623158e308",
    "2.2250738585072014E-308",
)
NUMERIC_OPERAND_RULES = (
    '{"numeric": ["=", @]}',
    '{"numeric": ["<", @]}',
    '{"numeric": [">=", 0, "<", @]}',
    '{"anything-but": @}',
    '{"anything-but": [7, @]}',
    "@",
)


@pytest.mark.parametrize("operand", NUMERIC_OPERANDS)
@pytest.mark.parametrize("rule", NUMERIC_OPERAND_RULES)
def test_refuses_the_numeric_operands_event_ruler_refuses(event_ruler, rule, operand):
    pattern = '{"a": [' + rule.replace("@", operand) + "]}"
    try:
        compiled = compile_filter_criteria({"Filters": [{"Pattern": pattern}]})
    except InvalidFilterPattern:
        compiled = None
    for value in ("0", "1", operand):
        event = '{"a": ' + value + "}"
        expected = event_ruler.ask([pattern], event)
        assert (compiled is None) is (type(expected) is str), f"event-ruler says {expected} for {pattern}"
        if compiled is not None and rule != "@":  # event-ruler matches an exact value by its text
            answer = compiled.matches(orjson.loads(event))
            assert answer is expected, f"event-ruler says {expected} for {pattern} on {event}"


_APPS = [app for app in discover_apps(load_pipeline()) if app.filter_criteria]


@pytest.mark.parametrize("app", _APPS, ids=lambda app: app.name)
@_settings(300)
@given(record=change_records())
def test_each_apps_criteria_select_what_event_ruler_selects(event_ruler, app, record):
    # changed_attributes is ours alone (Lambda has no such filter): only the criteria are compared
    pattern_list = [
        json.loads(f["Pattern"]) if isinstance(f["Pattern"], str) else f["Pattern"]
        for f in app.filter_criteria["Filters"]
    ]
    _same(event_ruler, pattern_list, record)


@pytest.mark.parametrize(
    ("pattern", "event", "documented", "why"),
    [
        (
            {"$or": [{"b": ["z"]}, {"b": [{"prefix": "x"}, "z"]}]},
            {"b": "x"},
            True,
            "a $or alternative repeating another's value for the same field is lost, at random",
        ),
        (
            {"b": ["x"], "$or": [{"b": ["y"]}, {"b": ["x", "y"]}]},
            {"b": "x"},
            True,
            "the same, after the alternatives replaced the field defined before them",
        ),
        (
            {"b": [{"wildcard": "*y"}, {"equals-ignore-case": "y"}]},
            {"b": "x"},
            False,
            "a leading-* wildcard listed before an equals-ignore-case of its tail matches anything",
        ),
    ],
)
def test_where_event_ruler_contradicts_itself(event_ruler, pattern, event, documented, why):
    """Reordering OR-ed lists changes event-ruler's answer here: we give the answer the
    documented semantics give, whatever the order."""
    asked = {
        event_ruler.ask([json.dumps(variant)], json.dumps(event))
        for variant in (pattern, _reordered(pattern))
        for _ in range(2 * RETRIES_FOR_OR)
    }
    assert asked == {True, False}, why
    assert ours([pattern], event) is documented
    assert ours([_reordered(pattern)], event) is documented


@pytest.mark.parametrize(
    ("pattern", "event", "ours_answer", "why"),
    [
        (
            {"a.b": ["x"]},
            {"a": {"b": "x"}},
            False,
            "event-ruler joins field names with '.', so a dotted name and nested objects are the "
            "same to it (its README: 'should not be relied upon'); we match names as written",
        ),
        (
            {"a": {"b": ["x"]}},
            {"a.b": "x"},
            False,
            "the same, the other way round",
        ),
        (
            {"a": [9007199254740993]},
            {"a": 9007199254740992},
            True,
            "numbers compare as IEEE doubles; event-ruler matches a number no double holds "
            "exactly by its text alone, which a parsed record no longer has",
        ),
    ],
)
def test_documented_differences_from_event_ruler(event_ruler, pattern, event, ours_answer, why):
    assert ours([pattern], event) is ours_answer, why
    assert event_ruler.ask([json.dumps(pattern)], json.dumps(event)) is (not ours_answer), why
