"""Array-consistent matching of one alternative, exactly as event-ruler's ``ACFinder`` does it.

The event's leaf values at each field path of the alternative are collected with their *array
membership*: for every array of objects (or of arrays) on the way, which element they sit in.
Scalars listed directly in an array carry no membership of that array: any of them may match.
The fields are then matched in the order of their dotted names (event-ruler sorts them), each
choosing a value whose membership agrees with the elements chosen so far. ``{"exists": false}``
holds when no value of its field agrees with the elements chosen by the fields *before* it in
that order (so ``{"b": {"a": ["x"], "c": [{"exists": false}]}}`` looks for ``c`` only in the
element where ``a`` matched, while ``{"b": {"c": [{"exists": false}], "z": ["x"]}}`` looks for
``c`` in every element: event-ruler's answer depends on the names, and so does ours).
"""

from __future__ import annotations

from typing import Any

from consumers.shared.filtering._common import _MISSING, Matcher

__all__ = ["ConsistentField", "consistent_matcher"]

#: one field of an alternative: its path, the test of one leaf value (the field's compiled value
#: list), and whether absence (``{"exists": false}``) satisfies it
ConsistentField = tuple[tuple[str, ...], Matcher, bool]
_Membership = dict[int, int]


def consistent_matcher(fields: list[ConsistentField]) -> Matcher:
    """A matcher over a whole event for the AND of ``fields`` (see the module docstring)."""
    ordered = tuple(sorted(fields, key=lambda field: ".".join(field[0])))

    def match(record: Any) -> bool:
        return _step(ordered, [_values(record, path) for path, _test, _absent_ok in ordered], 0, {})

    return match


def _step(fields: tuple[ConsistentField, ...], candidates: list, index: int, chosen: _Membership) -> bool:
    """Can fields[index:] be satisfied, given the array elements ``chosen`` so far?"""
    if index == len(fields):
        return True
    _path, test, absent_ok = fields[index]
    values = candidates[index]
    if absent_ok and not any(_agree(chosen, membership) for _value, membership in values):
        if _step(fields, candidates, index + 1, chosen):
            return True
    for value, membership in values:
        if test(value):
            merged = _merge(chosen, membership)
            if merged is not None and _step(fields, candidates, index + 1, merged):
                return True
    return False


def _values(node: Any, path: tuple[str, ...]) -> list[tuple[Any, _Membership]]:
    found: list[tuple[Any, _Membership]] = []
    _collect(node, path, {}, found)
    return found


def _collect(node: Any, path: tuple[str, ...], membership: _Membership, found: list) -> None:
    kind = type(node)
    if kind is list:
        for index, item in enumerate(node):
            item_kind = type(item)
            if item_kind is dict or item_kind is list:
                _collect(item, path, {**membership, id(node): index}, found)
            elif not path:
                found.append((item, membership))
        return
    if not path:
        if kind is not dict:  # objects are not values
            found.append((node, membership))
        return
    if kind is dict:
        child = node.get(path[0], _MISSING)
        if child is not _MISSING:
            _collect(child, path[1:], membership, found)


def _agree(chosen: _Membership, membership: _Membership) -> bool:
    for array, element in membership.items():
        if chosen.get(array, element) != element:
            return False
    return True


def _merge(chosen: _Membership, membership: _Membership) -> _Membership | None:
    if not membership:
        return chosen
    if not _agree(chosen, membership):
        return None
    return {**chosen, **membership}
