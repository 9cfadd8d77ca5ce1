"""Compiling one pattern object: nested fields, $or, arrays of objects, and the flattened fast path."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from consumers.shared.filtering._common import _COMPLEX, _EMPTY, _MISSING, _OR, _RESERVED_IN_OR, Matcher, _PatternError, _json_type
from consumers.shared.filtering._operators import _EXACT, Gate, _compile_leaf


class _Compiled:
    """A compiled object pattern: ``match_dict(d)`` for a dict, ``match_node(v)`` for any value."""

    __slots__ = ("match_dict", "match_node", "discriminators", "pairs")

    def __init__(
        self, match_dict: Matcher, match_node: Matcher, discriminators: list, pairs: list | None
    ) -> None:
        self.match_dict = match_dict
        self.match_node = match_node
        # (path tuple, frozenset of exact strings) for fields that must equal one of the strings
        self.discriminators = discriminators
        # the pattern flattened to (path, leaf matcher) pairs, AND-ed; None when it has a $or
        self.pairs = pairs


def _objects(items: list) -> Iterable[dict]:
    for item in items:
        kind = type(item)
        if kind is dict:
            yield item
        elif kind is list:
            yield from _objects(item)


def _compile_object(pattern: Any, path: str, *, in_or: bool = False) -> _Compiled:
    if type(pattern) is not dict:
        raise _PatternError(path, f"a pattern must be a JSON object, got {_json_type(pattern)}")
    if not pattern:
        raise _PatternError(path, "empty objects are not allowed")
    fields: list[tuple[str, Matcher]] = []
    alternatives: list[tuple[Matcher, ...]] = []
    discriminators: list[tuple[tuple[str, ...], Gate]] = []
    pairs: list[tuple[tuple[str, ...], Matcher]] | None = []
    for key, value in pattern.items():
        if type(key) is not str:
            raise _PatternError(path, f"field names must be strings, got {key!r}")
        field_path = f"{path}.{key}"
        if key == _OR and type(value) is list:
            if len(value) < 2:
                raise _PatternError(field_path, "$or needs an array of at least 2 objects")
            branches = []
            for index, branch in enumerate(value):
                branch_path = f"{field_path}[{index}]"
                if type(branch) is not dict:
                    raise _PatternError(branch_path, "only objects are allowed in a $or array")
                branches.append(_compile_object(branch, branch_path, in_or=True).match_dict)
            alternatives.append(tuple(branches))
            pairs = None
            continue
        if in_or and key in _RESERVED_IN_OR:
            raise _PatternError(field_path, f"{key!r} is a reserved word and cannot be a field name inside $or")
        if type(value) is dict:
            child = _compile_object(value, field_path, in_or=in_or)
            fields.append((key, child.match_node))
            discriminators.extend(((key, *sub), gate) for sub, gate in child.discriminators)
            if pairs is not None and child.pairs is not None:
                pairs.extend(((key, *sub), leaf) for sub, leaf in child.pairs)
            else:
                pairs = None
        elif type(value) is list:
            matcher, gate = _compile_leaf(value, field_path)
            fields.append((key, matcher))
            if gate is not None:
                discriminators.append(((key,), gate))
            if pairs is not None:
                pairs.append(((key,), matcher))
        else:
            raise _PatternError(field_path, f"{key!r} must be an object or an array, got {_json_type(value)}")
    match_dict = _conjunction(tuple(fields), tuple(alternatives))
    absent_result = match_dict({})

    def match_node(node: Any) -> bool:
        kind = type(node)
        if kind is dict:
            return match_dict(node)
        if kind is list:
            saw_object = False
            for element in _objects(node):
                if match_dict(element):
                    return True
                saw_object = True
            return absent_result and not saw_object
        return absent_result

    return _Compiled(match_dict, match_node, discriminators, pairs)


def _conjunction(fields: tuple[tuple[str, Matcher], ...], alternatives: tuple[tuple[Matcher, ...], ...]) -> Matcher:
    missing = _MISSING
    if not alternatives and len(fields) == 1:
        ((key, matcher),) = fields
        return lambda d: matcher(d.get(key, missing))
    if not alternatives and len(fields) == 2:
        (key1, matcher1), (key2, matcher2) = fields
        return lambda d: matcher1(d.get(key1, missing)) and matcher2(d.get(key2, missing))

    def conjunction(d: dict) -> bool:
        for key, matcher in fields:
            if not matcher(d.get(key, missing)):
                return False
        for branches in alternatives:
            for branch in branches:
                if branch(d):
                    break
            else:
                return False
        return True

    return conjunction




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


def _fast_matcher(compiled: _Compiled, skip: tuple[str, ...] | None = None) -> Matcher:
    """Evaluate the flattened pairs with dict-only getters; any non-dict on the way (arrays,
    scalars) falls back to the exact recursive matcher, which owns the array semantics.

    ``skip``: leave out the pair at this path -- for candidates found through an exact index
    gate on that path, whose string value the index has already matched."""
    exact = compiled.match_node
    if compiled.pairs is None:
        return exact
    pairs = tuple((_getter(path), leaf) for path, leaf in compiled.pairs if path != skip)
    if not pairs:
        return _always
    if len(pairs) == 1:
        ((get, leaf),) = pairs

        def one(record: Any) -> bool:
            try:
                value = get(record)
            except AttributeError:
                return exact(record)
            return leaf(value)

        return one

    def all_pairs(record: Any) -> bool:
        try:
            for get, leaf in pairs:
                if not leaf(get(record)):
                    return False
        except AttributeError:
            return exact(record)
        return True

    return all_pairs


_CompiledPattern = tuple[Matcher, list[tuple[tuple[str, ...], "Gate"]], Callable[[tuple[str, ...]], Matcher]]


def _compile_pattern(pattern: Any) -> _CompiledPattern:
    """-> (matcher over a record dict, its possible index gates, path -> matcher without the
    pair at that path)."""
    if type(pattern) is dict and len(pattern) == 1 and "data" in pattern:
        inner = pattern["data"]
        if type(inner) is dict:  # {"data": {...}} against {"data": record} == {...} against record
            compiled = _compile_object(inner, "$.data")
            return _fast_matcher(compiled), compiled.discriminators, lambda path: _fast_matcher(compiled, path)
        compiled = _compile_object(pattern, "$")
        match_dict = compiled.match_dict

        def wrapped(record: Any) -> bool:
            return match_dict({"data": record})

        return wrapped, [], lambda path: wrapped
    compiled = _compile_object(pattern, "$")
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
