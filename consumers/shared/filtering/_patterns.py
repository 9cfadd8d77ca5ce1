"""Compiling one pattern: validation, $or expansion into alternatives, the index gates and the fast path."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from consumers.shared.filtering._common import (
    EMPTY,
    MISSING,
    OR,
    RESERVED_IN_OR,
    Matcher,
    Path,
    PatternError,
    json_type,
)
from consumers.shared.filtering._consistent import consistent_matcher
from consumers.shared.filtering._operators import Gate, Leaf, compile_leaf

__all__ = ["MAX_ALTERNATIVES", "Alternative", "compile_pattern"]

#: a pattern with $or expands into alternatives; past this many, it is rejected (event-ruler
#: expands the same way and has limits of its own; Lambda caps a pattern at 4 KB)
MAX_ALTERNATIVES = 1024

#: one alternative of a pattern: flattened field path -> its compiled value list
_Rule = dict[Path, Leaf]


@dataclass(frozen=True, slots=True)
class Alternative:
    """One alternative of a pattern, compiled: ``matcher(record)`` evaluates it; ``gates`` are
    the paths whose string value must pass an index gate for it to match; ``without(path)`` is
    the matcher for the records that an exact gate on ``path`` let through (the index has matched
    that field already, so it is left out)."""

    matcher: Matcher
    gates: dict[Path, Gate]
    without: Callable[[Path], Matcher]


def compile_pattern(pattern: Any) -> list[Alternative]:
    """Validate a pattern object (PatternError) and compile each of its alternatives."""
    if type(pattern) is dict and len(pattern) == 1 and "data" in pattern:
        inner = pattern["data"]
        if type(inner) is dict:  # {"data": {...}} against {"data": record} == {...} against record
            return [_compile_alternative(rule) for rule in _expand(inner, "$.data")]
        # {"data": [values]}: a leaf test on the whole record (an object: only exists/anything-but)
        whole_record = _expand(pattern, "$")[0][("data",)].matcher
        return [Alternative(whole_record, {}, lambda _path: whole_record)]
    return [_compile_alternative(rule) for rule in _expand(pattern, "$")]


def _compile_alternative(rule: _Rule) -> Alternative:
    exact = consistent_matcher(rule)
    gates = {path: leaf.gate for path, leaf in rule.items() if leaf.gate is not None}
    return Alternative(_fast_matcher(rule, exact), gates, lambda path: _fast_matcher(rule, exact, path))


def _expand(pattern: Any, path: str, prefix: Path = (), *, in_or: bool = False) -> list[_Rule]:
    """Validate a pattern object and expand its ``$or`` into alternatives, as event-ruler does:
    fields are applied in document order, each alternative of a ``$or`` continues every rule
    built so far, and a field path defined again *replaces* the earlier definition in that rule
    (``{"a": ["x"], "$or": [{"a": ["y"]}, {"b": ["z"]}]}`` is ``a=y`` OR ``a=x AND b=z``)."""
    if type(pattern) is not dict:
        raise PatternError(path, f"a pattern must be a JSON object, got {json_type(pattern)}")
    if not pattern:
        raise PatternError(path, "empty objects are not allowed")
    rules: list[_Rule] = [{}]
    for key, value in pattern.items():
        if type(key) is not str:
            raise PatternError(path, f"field names must be strings, got {key!r}")
        field_path = f"{path}.{key}"
        if key == OR and type(value) is list:
            if len(value) < 2:
                raise PatternError(field_path, "$or needs an array of at least 2 objects")
            alternatives: list[_Rule] = []
            for index, branch in enumerate(value):
                branch_path = f"{field_path}[{index}]"
                if type(branch) is not dict:
                    raise PatternError(branch_path, "only objects are allowed in a $or array")
                alternatives.extend(_expand(branch, branch_path, prefix, in_or=True))
            rules = _combine(rules, alternatives, field_path)
        elif in_or and key in RESERVED_IN_OR:
            raise PatternError(field_path, f"{key!r} is a reserved word and cannot be a field name inside $or")
        elif type(value) is dict:
            rules = _combine(rules, _expand(value, field_path, (*prefix, key), in_or=in_or), field_path)
        elif type(value) is list:
            leaf = compile_leaf(value, field_path)  # validated even if replaced later
            for rule in rules:
                rule[(*prefix, key)] = leaf
        else:
            raise PatternError(field_path, f"{key!r} must be an object or an array, got {json_type(value)}")
    return rules


def _combine(rules: list[_Rule], additions: list[_Rule], path: str) -> list[_Rule]:
    if len(rules) * len(additions) > MAX_ALTERNATIVES:
        raise PatternError(path, f"the pattern expands to more than {MAX_ALTERNATIVES} alternatives ($or)")
    return [{**rule, **addition} for rule in rules for addition in additions]


def _getter(path: Path) -> Callable[[Any], Any]:
    """``record -> value at path`` (or MISSING) through dicts only; raises AttributeError when
    an intermediate value is not a dict (an array, a scalar): callers then take the exact path."""
    empty, missing = EMPTY, MISSING
    if len(path) == 1:
        (k1,) = path
        return lambda r: r.get(k1, missing)
    if len(path) == 2:
        k1, k2 = path
        return lambda r: r.get(k1, empty).get(k2, missing)
    if len(path) == 3:
        k1, k2, k3 = path
        return lambda r: r.get(k1, empty).get(k2, empty).get(k3, missing)
    if len(path) == 4:
        k1, k2, k3, k4 = path
        return lambda r: r.get(k1, empty).get(k2, empty).get(k3, empty).get(k4, missing)
    if len(path) == 5:
        k1, k2, k3, k4, k5 = path
        return lambda r: r.get(k1, empty).get(k2, empty).get(k3, empty).get(k4, empty).get(k5, missing)
    *heads, last = path

    def deep(r: Any) -> Any:
        for key in heads:
            r = r.get(key, empty)
        return r.get(last, missing)

    return deep


def _always(_record: Any) -> bool:
    return True


def _holds_containers(array: list[Any]) -> bool:
    """An array holding objects or arrays: array consistency is at stake, the fast path stops."""
    for item in array:
        if type(item) is dict or type(item) is list:
            return True
    return False


def _fast_matcher(rule: _Rule, exact: Matcher, skip: Path | None = None) -> Matcher:
    """Evaluate the fields of ``rule`` with dict-only getters, which is exact when every field is
    reached through objects only (then no array consistency is at stake); anything else on the
    way (arrays of objects, scalars) falls back to ``exact``, the array-consistent matcher.

    ``skip``: leave out the field at this path -- for candidates found through an exact index
    gate on that path, whose string value the index has already matched."""
    # (getter, test) pairs, AND-ed; plain pairs unpacked by the loop below, the hottest in the
    # filter (a slotted object per pair measured ~4% slower on bench.core)
    pairs = tuple((_getter(path), leaf.matcher) for path, leaf in rule.items() if path != skip)
    if not pairs:
        return _always

    def all_pairs(record: Any) -> bool:
        for get, test in pairs:
            try:
                value = get(record)
            except AttributeError:
                return exact(record)
            if type(value) is list and _holds_containers(value):
                return exact(record)
            if not test(value):
                return False
        return True

    return all_pairs
