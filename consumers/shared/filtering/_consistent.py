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

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from consumers.shared.filtering._common import MISSING, Matcher, Path

if TYPE_CHECKING:
    from consumers.shared.filtering._operators import Leaf

__all__ = ["consistent_matcher"]

#: for each array of objects on the way to a value (by id), the element the value sits in
_Membership = dict[int, int]
#: the values found at one path, each with its membership
_Found = list[tuple[Any, _Membership]]


def consistent_matcher(rule: Mapping[Path, Leaf]) -> Matcher:
    """A matcher over a whole event for the AND of the fields of ``rule`` (see the module
    docstring): each field path with its compiled value list."""
    paths = sorted(rule, key=".".join)
    leaves = tuple(rule[path] for path in paths)

    def match(record: Any) -> bool:
        return _step(leaves, [_values(record, path) for path in paths], 0, {})

    return match


def _step(leaves: tuple[Leaf, ...], candidates: list[_Found], index: int, chosen: _Membership) -> bool:
    """Can the fields from ``index`` on be satisfied, given the array elements ``chosen`` so far?"""
    if index == len(leaves):
        return True
    leaf = leaves[index]
    values = candidates[index]
    if leaf.absent_ok and not any(_agree(chosen, membership) for _value, membership in values):
        if _step(leaves, candidates, index + 1, chosen):
            return True
    for value, membership in values:
        if leaf.matcher(value):
            merged = _merge(chosen, membership)
            if merged is not None and _step(leaves, candidates, index + 1, merged):
                return True
    return False


def _values(node: Any, path: Path) -> _Found:
    found: _Found = []
    _collect(node, path, {}, found)
    return found


def _collect(node: Any, path: Path, membership: _Membership, found: _Found) -> None:
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
        child = node.get(path[0], MISSING)
        if child is not MISSING:
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
