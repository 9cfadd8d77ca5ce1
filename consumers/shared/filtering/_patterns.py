"""Compiling one pattern: validation, $or expansion into alternatives, the index gates and the fast path."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from consumers.shared.filtering._common import _COMPLEX, _EMPTY, _MISSING, _OR, _RESERVED_IN_OR, Matcher, _PatternError, _json_type
from consumers.shared.filtering._consistent import consistent_matcher
from consumers.shared.filtering._operators import _EXACT, Gate, _compile_leaf


#: a pattern with $or expands into alternatives; past this many, it is rejected (event-ruler
#: expands the same way and has limits of its own; Lambda caps a pattern at 4 KB)
MAX_ALTERNATIVES = 1024

#: a field's value list, compiled: (leaf matcher, index gate or None, whether {"exists": false}
#: is among the values)
_Leaf = tuple[Matcher, "Gate | None", bool]
#: one alternative of a pattern: flattened field path -> its compiled value list
_Rule = dict[tuple[str, ...], _Leaf]


def _expand(pattern: Any, path: str, prefix: tuple[str, ...] = (), *, in_or: bool = False) -> list[_Rule]:
    """Validate a pattern object and expand its ``$or`` into alternatives, as event-ruler does:
    fields are applied in document order, each alternative of a ``$or`` continues every rule
    built so far, and a field path defined again *replaces* the earlier definition in that rule
    (``{"a": ["x"], "$or": [{"a": ["y"]}, {"b": ["z"]}]}`` is ``a=y`` OR ``a=x AND b=z``)."""
    if type(pattern) is not dict:
        raise _PatternError(path, f"a pattern must be a JSON object, got {_json_type(pattern)}")
    if not pattern:
        raise _PatternError(path, "empty objects are not allowed")
    rules: list[_Rule] = [{}]
    for key, value in pattern.items():
        if type(key) is not str:
            raise _PatternError(path, f"field names must be strings, got {key!r}")
        field_path = f"{path}.{key}"
        if key == _OR and type(value) is list:
            if len(value) < 2:
                raise _PatternError(field_path, "$or needs an array of at least 2 objects")
            alternatives: list[_Rule] = []
            for index, branch in enumerate(value):
                branch_path = f"{field_path}[{index}]"
                if type(branch) is not dict:
                    raise _PatternError(branch_path, "only objects are allowed in a $or array")
                alternatives.extend(_expand(branch, branch_path, prefix, in_or=True))
            rules = _combine(rules, alternatives, field_path)
        elif in_or and key in _RESERVED_IN_OR:
            raise _PatternError(field_path, f"{key!r} is a reserved word and cannot be a field name inside $or")
        elif type(value) is dict:
            rules = _combine(rules, _expand(value, field_path, (*prefix, key), in_or=in_or), field_path)
        elif type(value) is list:
            matcher, gate = _compile_leaf(value, field_path)  # validated even if replaced later
            leaf = (matcher, gate, any(_is_exists_false(item) for item in value))
            for rule in rules:
                rule[(*prefix, key)] = leaf
        else:
            raise _PatternError(field_path, f"{key!r} must be an object or an array, got {_json_type(value)}")
    return rules


def _is_exists_false(value: Any) -> bool:
    return type(value) is dict and len(value) == 1 and value.get("exists", True) is False


def _combine(rules: list[_Rule], additions: list[_Rule], path: str) -> list[_Rule]:
    if len(rules) * len(additions) > MAX_ALTERNATIVES:
        raise _PatternError(path, f"the pattern expands to more than {MAX_ALTERNATIVES} alternatives ($or)")
    return [{**rule, **addition} for rule in rules for addition in additions]


class _Compiled:
    """One alternative, compiled: ``exact(record)`` evaluates it as event-ruler does; ``pairs``
    flatten it for the fast path; ``discriminators`` are its possible index gates."""

    __slots__ = ("exact", "discriminators", "pairs")

    def __init__(self, exact: Matcher, discriminators: list, pairs: list) -> None:
        self.exact = exact
        # (path tuple, gate) for fields whose value must pass the gate (see _operators._gate)
        self.discriminators = discriminators
        # (path, leaf matcher) pairs, AND-ed
        self.pairs = pairs


def _compile_rule(rule: _Rule) -> _Compiled:
    return _Compiled(
        consistent_matcher([(path, leaf, absent_ok) for path, (leaf, _gate, absent_ok) in rule.items()]),
        [(path, gate) for path, (_leaf, gate, _absent_ok) in rule.items() if gate is not None],
        [(path, leaf) for path, (leaf, _gate, _absent_ok) in rule.items()],
    )


def _getter(path: tuple[str, ...]) -> Matcher:
    """``record -> value at path`` (or _MISSING) through dicts only; raises AttributeError when
    an intermediate value is not a dict (an array, a scalar): callers then take the exact path."""
    empty, missing = _EMPTY, _MISSING
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


def _holds_containers(array: list) -> bool:
    """An array holding objects or arrays: array consistency is at stake, the fast path stops."""
    for item in array:
        if type(item) is dict or type(item) is list:
            return True
    return False


def _fast_matcher(compiled: _Compiled, skip: tuple[str, ...] | None = None) -> Matcher:
    """Evaluate the flattened pairs with dict-only getters, which is exact when every field is
    reached through objects only (then no array consistency is at stake); anything else on the
    way (arrays of objects, scalars) falls back to the exact matcher.

    ``skip``: leave out the pair at this path -- for candidates found through an exact index
    gate on that path, whose string value the index has already matched."""
    exact = compiled.exact
    pairs = tuple((_getter(path), leaf) for path, leaf in compiled.pairs if path != skip)
    if not pairs:
        return _always
    def all_pairs(record: Any) -> bool:
        for get, leaf in pairs:
            try:
                value = get(record)
            except AttributeError:
                return exact(record)
            if type(value) is list and _holds_containers(value):
                return exact(record)
            if not leaf(value):
                return False
        return True

    return all_pairs


_CompiledPattern = tuple[Matcher, list[tuple[tuple[str, ...], "Gate"]], Callable[[tuple[str, ...]], Matcher]]


def _compile_pattern(pattern: Any) -> list[_CompiledPattern]:
    """-> one (matcher over a record dict, its possible index gates, path -> matcher without
    the pair at that path) per alternative of the pattern."""
    if type(pattern) is dict and len(pattern) == 1 and "data" in pattern:
        inner = pattern["data"]
        if type(inner) is dict:  # {"data": {...}} against {"data": record} == {...} against record
            return [_indexable(rule) for rule in _expand(inner, "$.data")]
        # {"data": [values]}: a leaf test on the whole record (an object: only exists/anything-but)
        ((_path, (matcher, _gate, _absent_ok)),) = _expand(pattern, "$")[0].items()
        return [(matcher, [], lambda path: matcher)]
    return [_indexable(rule) for rule in _expand(pattern, "$")]


def _indexable(rule: _Rule) -> _CompiledPattern:
    compiled = _compile_rule(rule)
    return _fast_matcher(compiled), compiled.discriminators, lambda path: _fast_matcher(compiled, path)


def _choose(patterns: list[_CompiledPattern]) -> list[tuple[Matcher, tuple[tuple[str, ...], Gate] | None, Callable]]:
    """Pick one gate per pattern: on the path most patterns can be gated on (fewest lookups per
    record), then exact over prefix/suffix gates, then the deepest path (most specific)."""
    paths_used: dict[tuple[str, ...], int] = {}
    for _matcher, gates, _reduce in patterns:
        for path in {path for path, _gate in gates}:
            paths_used[path] = paths_used.get(path, 0) + 1
    chosen = []
    for matcher, gates, reduce in patterns:
        if not gates:
            chosen.append((matcher, None, reduce))
            continue
        best = max(
            gates,
            key=lambda item: (paths_used[item[0]], item[1][0] == _EXACT, len(item[0])),
        )
        chosen.append((matcher, best, reduce))
    return chosen


def _lookup(record: Any, path: tuple[str, ...]) -> Any:
    node = record
    for key in path:
        kind = type(node)
        if kind is dict:
            node = node.get(key, _MISSING)
            if node is _MISSING:
                return _MISSING
        elif kind is list:
            return _COMPLEX
        else:
            return _MISSING
    if type(node) is list:
        return _COMPLEX
    return node
