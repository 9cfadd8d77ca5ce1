"""``CompiledFilter`` (the index over all patterns, unrolled into one generated function) and
``compile_filter_criteria``."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from consumers.shared.errors import InvalidFilterPattern
from consumers.shared.filtering._changed import changed_test
from consumers.shared.filtering._common import COMPLEX, EMPTY, MISSING, Matcher, Path, PatternError, json_type
from consumers.shared.filtering._numbers import load_pattern
from consumers.shared.filtering._operators import EXACT, PREFIX
from consumers.shared.filtering._patterns import Alternative, compile_pattern

__all__ = ["CompiledFilter", "compile_filter_criteria"]


class CompiledFilter:
    """Filter criteria compiled once; ``matches(record)`` many times (thread-safe, immutable)."""

    __slots__ = ("_criteria_match", "_changed", "_match_all", "pattern_count", "changed_attributes")

    def __init__(self, patterns: list[list[Alternative]], changed_attributes: tuple[str, ...]) -> None:
        """``patterns``: per filter, its alternatives (``compile_pattern``)."""
        entries, unindexed = _index([alternative for alternatives in patterns for alternative in alternatives])
        self._criteria_match = _generate(entries, unindexed)
        self._match_all = not patterns
        self._changed = changed_test(changed_attributes) if changed_attributes else None
        self.pattern_count = len(patterns)
        self.changed_attributes = changed_attributes

    def matches(self, record: Mapping[str, Any]) -> bool:
        """True when the raw change record passes the criteria (and ``changed_attributes``)."""
        if not self._match_all and not self._criteria_match(record):
            return False
        changed = self._changed
        return changed is None or changed(record)

    def __repr__(self) -> str:
        return f"CompiledFilter({self.pattern_count} patterns, changed_attributes={list(self.changed_attributes)!r})"


@dataclass(frozen=True, slots=True)
class GatedMatcher:
    """An alternative behind a prefix or suffix gate: the value must start (end) with one of
    ``strings`` before ``matcher`` runs."""

    strings: tuple[str, ...]
    matcher: Matcher


@dataclass(slots=True)
class IndexEntry:
    """The alternatives gated on one path, by the kind of their gate."""

    path: Path
    #: exact gates: value -> the alternatives it lets through, without that field (matched)
    exact: dict[str, list[Matcher]] = field(default_factory=dict)
    prefixed: list[GatedMatcher] = field(default_factory=list)
    suffixed: list[GatedMatcher] = field(default_factory=list)
    #: every alternative of the path, for a value the gates cannot judge (the path runs
    #: through an array)
    everyone: list[Matcher] = field(default_factory=list)


def _index(alternatives: list[Alternative]) -> tuple[list[IndexEntry], list[Matcher]]:
    """-> (the index entries, the alternatives without a gate). Each alternative is indexed on
    one of its gates: on the path most alternatives can be gated on (fewest lookups per record),
    then exact over prefix/suffix gates, then the deepest path (most specific)."""
    paths_used = Counter(path for alternative in alternatives for path in alternative.gates)
    entries: dict[Path, IndexEntry] = {}
    unindexed: list[Matcher] = []
    for alternative in alternatives:
        gates = alternative.gates
        if not gates:
            unindexed.append(alternative.matcher)
            continue
        path = max(gates, key=lambda candidate: (paths_used[candidate], gates[candidate].kind == EXACT, len(candidate)))
        gate = gates[path]
        entry = entries.setdefault(path, IndexEntry(path))
        entry.everyone.append(alternative.matcher)
        if gate.kind == EXACT:
            reduced = alternative.without(path)  # the index has matched this path's value already
            for value in gate.strings:
                entry.exact.setdefault(value, []).append(reduced)
        else:
            gated = GatedMatcher(gate.strings, alternative.matcher)
            (entry.prefixed if gate.kind == PREFIX else entry.suffixed).append(gated)
    return list(entries.values()), unindexed


def _generate(entries: list[IndexEntry], unindexed: list[Matcher]) -> Matcher:
    """One function matching a record against the index, unrolled: no loop over the entries, the
    lookups inlined (built once per filter, like namedtuple's generated code). For each entry:
    read the value at its path through dicts (``_lookup`` when something else is on the way);
    a string runs the alternatives its exact value, prefixes and suffixes let through; an array
    (or ``COMPLEX``) runs every alternative of the path. Then the unindexed alternatives."""
    namespace: dict[str, Any] = {"MISSING": MISSING, "COMPLEX": COMPLEX, "EMPTY": EMPTY, "lookup": _lookup}
    lines = ["def criteria_match(record):"]
    for number, entry in enumerate(entries):
        path = entry.path
        namespace[f"P{number}"] = path
        namespace[f"E{number}"] = tuple(entry.everyone)
        chain = "record" + "".join(f".get({key!r}, EMPTY)" for key in path[:-1]) + f".get({path[-1]!r}, MISSING)"
        lines += [
            "    try:",
            f"        value = {chain}",
            "    except AttributeError:",
            f"        value = lookup(record, P{number})",
            "    kind = type(value)",
            "    if kind is str:",
        ]
        if entry.exact:
            namespace[f"X{number}"] = {value: tuple(matchers) for value, matchers in entry.exact.items()}
            lines += [
                f"        candidates = X{number}.get(value)",
                "        if candidates is not None:",
                "            for matcher in candidates:",
                "                if matcher(record):",
                "                    return True",
            ]
        for method, gated_matchers, tag in (("startswith", entry.prefixed, "PX"), ("endswith", entry.suffixed, "SX")):
            if not gated_matchers:
                continue
            indent = " " * 8
            if len(gated_matchers) > 1:  # one test for all the gates of this kind first
                namespace[f"{tag}{number}"] = tuple(sorted({s for gated in gated_matchers for s in gated.strings}))
                lines.append(f"{indent}if value.{method}({tag}{number}):")
                indent += " " * 4
            for index, gated in enumerate(gated_matchers):
                name = f"{tag}{number}_{index}"
                namespace[name], namespace[f"M{name}"] = gated.strings, gated.matcher
                lines += [f"{indent}if value.{method}({name}) and M{name}(record):", f"{indent}    return True"]
        lines += [
            "        pass",  # the str branch may hold nothing else
            "    elif value is COMPLEX or kind is list:",
            f"        for matcher in E{number}:",
            "            if matcher(record):",
            "                return True",
        ]
    namespace["UNINDEXED"] = tuple(unindexed)
    lines += [
        "    for matcher in UNINDEXED:",
        "        if matcher(record):",
        "            return True",
        "    return False",
    ]
    exec("\n".join(lines), namespace)  # noqa: S102 - source built above from our own constants
    return namespace["criteria_match"]  # type: ignore[no-any-return]


def _lookup(record: Any, path: Path) -> Any:
    """The value at ``path`` when something other than objects is on the way: MISSING, or
    COMPLEX when an array is (every alternative of the path must then be evaluated)."""
    node = record
    for key in path:
        kind = type(node)
        if kind is dict:
            node = node.get(key, MISSING)
            if node is MISSING:
                return MISSING
        elif kind is list:
            return COMPLEX
        else:
            return MISSING
    if type(node) is list:
        return COMPLEX
    return node


def _pattern_object(pattern: Any, index: int) -> Any:
    if isinstance(pattern, (str, bytes)):
        try:
            return load_pattern(pattern)
        except orjson.JSONDecodeError as exc:
            raise InvalidFilterPattern(index, "$", f"malformed JSON: {exc}") from exc
    return pattern


def compile_filter_criteria(
    criteria: Mapping[str, Any] | None,
    *,
    changed_attributes: Iterable[str] | None = None,
) -> CompiledFilter:
    """Compile Lambda ``FilterCriteria`` (``{"Filters": [{"Pattern": str | dict}, ...]}``).

    ``changed_attributes``: attribute names; a MODIFY passes only if one of them changed.
    Raises ``InvalidFilterPattern`` for a bad criteria object or pattern.
    """
    names: tuple[str, ...] = ()
    if changed_attributes is not None:
        if isinstance(changed_attributes, (str, bytes)):
            raise InvalidFilterPattern(None, "changed_attributes", "must be a list of attribute names, not a string")
        names = tuple(changed_attributes)
        for name in names:
            if type(name) is not str or not name:
                raise InvalidFilterPattern(None, "changed_attributes", f"bad attribute name {name!r}")
    if criteria is None:
        return CompiledFilter([], names)
    if not isinstance(criteria, Mapping):
        raise InvalidFilterPattern(None, "$", f"FilterCriteria must be an object, got {json_type(criteria)}")
    filters = criteria.get("Filters")
    if filters is None:
        return CompiledFilter([], names)
    if not isinstance(filters, (list, tuple)):
        raise InvalidFilterPattern(None, "Filters", f"must be an array, got {json_type(filters)}")
    compiled = []
    for index, entry in enumerate(filters):
        if not isinstance(entry, Mapping) or "Pattern" not in entry:
            raise InvalidFilterPattern(index, "$", "each filter must be an object with a Pattern")
        pattern = _pattern_object(entry["Pattern"], index)
        try:
            compiled.append(compile_pattern(pattern))
        except PatternError as exc:
            raise InvalidFilterPattern(index, exc.path, exc.reason) from exc
    return CompiledFilter(compiled, names)
