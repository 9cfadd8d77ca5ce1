"""Runtime tests of one field's value list: what a compiled leaf runs on each event value."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from consumers.shared.filtering._common import MISSING, Matcher, PatternError

__all__ = ["LeafSpec", "Range", "ip_literal", "leaf_matcher", "wildcard_regex"]

# event-ruler's test for "looks like an IP address" (before it parses one)
_IPV4_TEXT = re.compile(r"[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+")
_IPV6_TEXT = re.compile(r"[0-9a-fA-F:]*:[0-9a-fA-F:]*")


def ip_literal(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address a string spells, read as event-ruler reads it (Java's ``InetAddress``):
    IPv4 as four decimal parts (leading zeros allowed: ``010.0.0.7`` is 10.0.0.7), IPv6 in
    any notation, an IPv4-mapped IPv6 address as its IPv4 address; None for anything else."""
    if _IPV4_TEXT.fullmatch(text):
        parts = [int(part) for part in text.split(".")]
        return ipaddress.IPv4Address(bytes(parts)) if max(parts) <= 255 else None
    if _IPV6_TEXT.fullmatch(text):
        try:
            address = ipaddress.IPv6Address(text)
        except ValueError:
            return None
        return address.ipv4_mapped or address
    return None


@dataclass(frozen=True, slots=True)
class Range:
    """``numeric``'s interval; an open bound excludes its value, None is unbounded."""

    lower: float | None
    lower_open: bool
    upper: float | None
    upper_open: bool


@dataclass(slots=True)
class LeafSpec:
    """Everything one field's value list asks for, grouped by match type."""

    strings: set[str] = field(default_factory=set)
    numbers: set[float] = field(default_factory=set)
    literals: list[Any] = field(default_factory=list)  # True / False / None, compared by identity
    prefixes: list[str] = field(default_factory=list)
    suffixes: list[str] = field(default_factory=list)
    ci_equals: set[str] = field(default_factory=set)
    ci_prefixes: list[str] = field(default_factory=list)
    ci_suffixes: list[str] = field(default_factory=list)
    wildcards: list[str] = field(default_factory=list)
    ranges: list[Range] = field(default_factory=list)
    networks: list[Any] = field(default_factory=list)
    negations: list[Matcher] = field(default_factory=list)  # anything-but tests (already negated)
    exists_true: bool = False
    exists_false: bool = False

    def only_strings(self) -> bool:
        return bool(self.strings) and not (
            self.numbers
            or self.literals
            or self.prefixes
            or self.suffixes
            or self.ci_equals
            or self.ci_prefixes
            or self.ci_suffixes
            or self.wildcards
            or self.ranges
            or self.networks
            or self.negations
            or self.exists_true
            or self.exists_false
        )


def wildcard_regex(patterns: Iterable[str], path: str) -> str:
    parts = []
    for pattern in patterns:
        out = []
        index = 0
        previous_star = False
        while index < len(pattern):
            char = pattern[index]
            if char == "\\":
                following = pattern[index + 1 : index + 2]
                if following not in ("*", "\\"):
                    raise PatternError(path, f"wildcard {pattern!r}: a backslash may only escape '*' or '\\'")
                out.append(re.escape(following))
                index += 2
                previous_star = False
                continue
            if char == "*":
                if previous_star:
                    raise PatternError(path, f"wildcard {pattern!r}: consecutive wildcard characters")
                out.append(".*")
                previous_star = True
            else:
                out.append(re.escape(char))
                previous_star = False
            index += 1
        parts.append("(?:" + "".join(out) + ")")
    return "|".join(parts)


def _string_test(spec: LeafSpec, path: str) -> Matcher | None:
    """One predicate over strings covering every positive string test in ``spec``."""
    tests: list[Matcher] = []
    if spec.strings:
        tests.append(frozenset(spec.strings).__contains__)
    if spec.prefixes:
        tests.append(_bound_startswith(tuple(spec.prefixes)))
    if spec.suffixes:
        tests.append(_bound_endswith(tuple(spec.suffixes)))
    if spec.ci_equals or spec.ci_prefixes or spec.ci_suffixes:
        equals = frozenset(spec.ci_equals)
        starts = tuple(spec.ci_prefixes)
        ends = tuple(spec.ci_suffixes)

        def ignore_case(value: str) -> bool:
            lowered = value.lower()
            return (
                lowered in equals
                or (bool(starts) and lowered.startswith(starts))
                or (bool(ends) and lowered.endswith(ends))
            )

        tests.append(ignore_case)
    if spec.wildcards:
        tests.append(_fullmatch(re.compile(wildcard_regex(spec.wildcards, path), re.DOTALL)))
    if spec.networks:
        networks = tuple(spec.networks)

        def in_network(value: str) -> bool:
            address = ip_literal(value)
            return address is not None and any(address in network for network in networks)

        tests.append(in_network)
    return _any_of(tests)


def _bound_startswith(prefixes: tuple[str, ...]) -> Matcher:
    return lambda value: value.startswith(prefixes)


def _bound_endswith(suffixes: tuple[str, ...]) -> Matcher:
    return lambda value: value.endswith(suffixes)


def _fullmatch(regex: re.Pattern[str]) -> Matcher:
    match = regex.fullmatch
    return lambda value: match(value) is not None


def _any_of(tests: list[Matcher]) -> Matcher | None:
    if not tests:
        return None
    if len(tests) == 1:
        return tests[0]
    tuple_tests = tuple(tests)

    def any_test(value: Any) -> bool:
        for test in tuple_tests:
            if test(value):
                return True
        return False

    return any_test


def _range_test(bounds: Range) -> Matcher:
    lower, lower_open, upper, upper_open = bounds.lower, bounds.lower_open, bounds.upper, bounds.upper_open

    def in_range(number: float) -> bool:
        if lower is not None and (number <= lower if lower_open else number < lower):
            return False
        if upper is not None and (number >= upper if upper_open else number > upper):
            return False
        return True

    return in_range


def _number_test(spec: LeafSpec) -> Matcher | None:
    tests: list[Matcher] = []
    if spec.numbers:
        tests.append(frozenset(spec.numbers).__contains__)
    for bounds in spec.ranges:
        tests.append(_range_test(bounds))
    return _any_of(tests)


def _value_test(spec: LeafSpec, path: str) -> Matcher:
    """Predicate over one present scalar leaf value (str, int, float, bool or None)."""
    string_test = _string_test(spec, path)
    number_test = _number_test(spec)
    literals = tuple(spec.literals)
    negations = tuple(spec.negations)
    if string_test is not None and number_test is None and not literals and not negations:
        if spec.only_strings():
            return frozenset(spec.strings).__contains__  # hashable scalars only reach here

        def strings_only(value: Any) -> bool:
            return type(value) is str and string_test(value)

        return strings_only

    def test(value: Any) -> bool:
        kind = type(value)
        if kind is str:
            if string_test is not None and string_test(value):
                return True
        elif kind is int or kind is float:
            if number_test is not None and number_test(float(value)):
                return True
        else:
            for literal in literals:
                if value is literal:
                    return True
        for negation in negations:
            if negation(value):
                return True
        return False

    return test


def _leaves(items: list[Any]) -> Iterable[Any]:
    for item in items:
        kind = type(item)
        if kind is list:
            yield from _leaves(item)
        elif kind is not dict:
            yield item


def leaf_matcher(spec: LeafSpec, path: str) -> Matcher:
    """Matcher for one field's value list, called with the event's value (or MISSING)."""
    exists_true = spec.exists_true
    exists_false = spec.exists_false
    test = _value_test(spec, path) if _has_value_tests(spec) else _never
    if spec.only_strings():
        strings = frozenset(spec.strings)

        def exact_strings(value: Any) -> bool:
            kind = type(value)
            if kind is str:
                return value in strings
            if kind is list:
                for item in _leaves(value):
                    if type(item) is str and item in strings:
                        return True
            return False

        return exact_strings

    def leaf(value: Any) -> bool:
        kind = type(value)
        if kind is list:
            present = False
            for item in _leaves(value):
                if exists_true or test(item):
                    return True
                present = True
            return exists_false and not present
        if kind is dict or value is MISSING:
            return exists_false
        return exists_true or test(value)

    return leaf


def _has_value_tests(spec: LeafSpec) -> bool:
    return bool(
        spec.strings
        or spec.numbers
        or spec.literals
        or spec.prefixes
        or spec.suffixes
        or spec.ci_equals
        or spec.ci_prefixes
        or spec.ci_suffixes
        or spec.wildcards
        or spec.ranges
        or spec.networks
        or spec.negations
    )


def _never(_value: Any) -> bool:
    return False
