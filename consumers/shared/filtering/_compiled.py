"""``CompiledFilter`` (the index over all patterns, unrolled into one generated function) and
``compile_filter_criteria``."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import orjson

from consumers.shared.errors import InvalidFilterPattern
from consumers.shared.filtering._changed import _changed_test
from consumers.shared.filtering._common import _COMPLEX, _EMPTY, _MISSING, Matcher, _PatternError, _json_type
from consumers.shared.filtering._operators import _EXACT, _PREFIX, _SUFFIX
from consumers.shared.filtering._patterns import _CompiledPattern, _choose, _compile_pattern, _getter, _lookup

__all__ = ["CompiledFilter", "compile_filter_criteria"]


class CompiledFilter:
    """Filter criteria compiled once; ``matches(record)`` many times (thread-safe, immutable)."""

    __slots__ = (
        "_indexed",
        "_unindexed",
        "_changed",
        "_match_all",
        "_generated",
        "pattern_count",
        "changed_attributes",
    )

    def __init__(
        self,
        patterns: list[list[_CompiledPattern]],
        changed_attributes: tuple[str, ...],
    ) -> None:
        """``patterns``: per filter, its alternatives (``_compile_pattern``)."""
        by_path: dict[tuple[str, ...], dict[str, list]] = {}
        unindexed: list[Matcher] = []
        for matcher, choice, reduce in _choose([alternative for p in patterns for alternative in p]):
            if choice is None:
                unindexed.append(matcher)
                continue
            path, (kind, values) = choice
            entry = by_path.setdefault(path, {"exact": {}, _PREFIX: [], _SUFFIX: [], "all": []})
            entry["all"].append(matcher)
            if kind == _EXACT:
                reduced = reduce(path)  # the index has matched this path's value already
                for value in values:
                    entry["exact"].setdefault(value, []).append(reduced)
            else:
                entry[kind].append((values, matcher))
        indexed = []
        for path, entry in by_path.items():
            prefixes = entry[_PREFIX]
            suffixes = entry[_SUFFIX]
            indexed.append(
                (
                    _getter(path),
                    path,
                    {value: tuple(ms) for value, ms in entry["exact"].items()},
                    tuple(sorted({p for values, _ in prefixes for p in values})),
                    tuple(prefixes),
                    tuple(sorted({p for values, _ in suffixes for p in values})),
                    tuple(suffixes),
                    tuple(entry["all"]),
                )
            )
        self._indexed = tuple(indexed)
        self._unindexed = tuple(unindexed)
        self._match_all = not patterns
        self._generated = _generate(self._indexed, self._unindexed)
        self._changed = _changed_test(changed_attributes) if changed_attributes else None
        self.pattern_count = len(patterns)
        self.changed_attributes = changed_attributes

    def _criteria_match(self, record: Any) -> bool:
        if self._match_all:
            return True
        for get, path, exact, all_prefixes, prefixed, all_suffixes, suffixed, everyone in self._indexed:
            try:
                value = get(record)
            except AttributeError:
                value = _lookup(record, path)
            kind = type(value)
            if kind is str:
                candidates = exact.get(value)
                if candidates is not None:
                    for matcher in candidates:
                        if matcher(record):
                            return True
                if all_prefixes and value.startswith(all_prefixes):
                    for prefixes, matcher in prefixed:
                        if value.startswith(prefixes) and matcher(record):
                            return True
                if all_suffixes and value.endswith(all_suffixes):
                    for suffixes, matcher in suffixed:
                        if value.endswith(suffixes) and matcher(record):
                            return True
            elif value is _COMPLEX or kind is list:
                for matcher in everyone:
                    if matcher(record):
                        return True
        for matcher in self._unindexed:
            if matcher(record):
                return True
        return False

    def matches(self, record: Mapping[str, Any]) -> bool:
        """True when the raw change record passes the criteria (and ``changed_attributes``)."""
        if not self._match_all and not self._generated(record):
            return False
        changed = self._changed
        return changed is None or changed(record)

    def __repr__(self) -> str:
        return (
            f"CompiledFilter({self.pattern_count} patterns, "
            f"changed_attributes={list(self.changed_attributes)!r})"
        )


def _generate(indexed: tuple, unindexed: tuple) -> Matcher:
    """Unroll ``CompiledFilter._criteria_match`` into one function (same logic, no loop over
    the index, no tuple unpacking, lookups inlined): built once per filter, like namedtuple's
    generated code. ``_criteria_match`` stays as the readable reference and is tested equal."""
    namespace: dict[str, Any] = {"_MISSING": _MISSING, "_COMPLEX": _COMPLEX, "_EMPTY": _EMPTY, "_lookup": _lookup}
    lines = ["def generated(record):"]
    for number, (_get, path, exact, all_prefixes, prefixed, all_suffixes, suffixed, everyone) in enumerate(indexed):
        namespace[f"P{number}"] = path
        namespace[f"X{number}"] = exact
        namespace[f"AP{number}"], namespace[f"PX{number}"] = all_prefixes, prefixed
        namespace[f"AS{number}"], namespace[f"SX{number}"] = all_suffixes, suffixed
        namespace[f"E{number}"] = everyone
        chain = "record" + "".join(f".get({key!r}, _EMPTY)" for key in path[:-1]) + f".get({path[-1]!r}, _MISSING)"
        lines += [
            "    try:",
            f"        value = {chain}",
            "    except AttributeError:",
            f"        value = _lookup(record, P{number})",
            "    kind = type(value)",
            "    if kind is str:",
        ]
        if exact:
            lines += [
                f"        candidates = X{number}.get(value)",
                "        if candidates is not None:",
                "            for matcher in candidates:",
                "                if matcher(record):",
                "                    return True",
            ]
        if all_prefixes:
            lines += [
                f"        if value.startswith(AP{number}):",
                f"            for prefixes, matcher in PX{number}:",
                "                if value.startswith(prefixes) and matcher(record):",
                "                    return True",
            ]
        if all_suffixes:
            lines += [
                f"        if value.endswith(AS{number}):",
                f"            for suffixes, matcher in SX{number}:",
                "                if value.endswith(suffixes) and matcher(record):",
                "                    return True",
            ]
        lines += [
            "        pass",
            "    elif value is _COMPLEX or kind is list:",
            f"        for matcher in E{number}:",
            "            if matcher(record):",
            "                return True",
        ]
    namespace["UNINDEXED"] = unindexed
    lines += [
        "    for matcher in UNINDEXED:",
        "        if matcher(record):",
        "            return True",
        "    return False",
    ]
    exec("\n".join(lines), namespace)  # noqa: S102 - source built above from our own constants
    return namespace["generated"]


def _pattern_object(pattern: Any, index: int) -> Any:
    if isinstance(pattern, (str, bytes)):
        try:
            return orjson.loads(pattern)
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
        raise InvalidFilterPattern(None, "$", f"FilterCriteria must be an object, got {_json_type(criteria)}")
    filters = criteria.get("Filters")
    if filters is None:
        return CompiledFilter([], names)
    if not isinstance(filters, (list, tuple)):
        raise InvalidFilterPattern(None, "Filters", f"must be an array, got {_json_type(filters)}")
    compiled = []
    for index, entry in enumerate(filters):
        if not isinstance(entry, Mapping) or "Pattern" not in entry:
            raise InvalidFilterPattern(index, "$", "each filter must be an object with a Pattern")
        pattern = _pattern_object(entry["Pattern"], index)
        try:
            compiled.append(_compile_pattern(pattern))
        except _PatternError as exc:
            raise InvalidFilterPattern(index, exc.path, exc.reason) from exc
    return CompiledFilter(compiled, names)
