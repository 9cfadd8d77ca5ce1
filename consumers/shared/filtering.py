"""Lambda-style event filtering (FilterCriteria), compiled once, matched on raw change records.

``compile_filter_criteria({"Filters": [{"Pattern": "<json>"}, ...]})`` returns a
``CompiledFilter`` whose ``matches(record)`` takes the change record exactly as parsed from the
stream (DynamoDB JSON images, e.g. ``{"dynamodb": {"NewImage": {"Email": {"S": "x"}}}}``).
Filters are OR-ed, the fields of one pattern AND-ed, the values listed for one field OR-ed.
No criteria (None, ``{}``, no ``Filters``, empty ``Filters``) matches everything.

Grammar (AWS Lambda event filtering = EventBridge content filtering, as implemented by
aws/event-ruler): exact strings / numbers / ``true`` / ``false`` / ``null`` / ``""``;
``prefix``, ``suffix`` (each also as ``{"equals-ignore-case": s}``); ``equals-ignore-case``;
``wildcard`` (``*``; ``\\*`` and ``\\\\`` escape; no consecutive ``*``); ``anything-but`` (a
string, a number, a list of only strings or only numbers, or ``{"prefix"|"suffix"|
"equals-ignore-case"|"wildcard": s or [s, ...]}``); ``numeric`` (``["=", x]``, ``["<", x]``,
``["<=", x]``, ``[">"|">=", x]``, ``[">"|">=", lo, "<"|"<=", hi]``); ``exists``; ``cidr``;
``$or`` (a list of two or more objects, at any level). A pattern whose only top-level key is
``data`` is matched against ``{"data": record}`` (Kinesis-style filters).

Semantics, as in AWS:

* Values match leaf values only. Strings, prefix/suffix/ignore-case/wildcard only match JSON
  strings; numbers and ``numeric`` only JSON numbers, compared as IEEE doubles (5 == 5.0;
  the string ``"5"`` -- e.g. DynamoDB's ``{"N": "5"}`` -- is not a number); ``null`` only JSON
  null, ``""`` only the empty string.
* An absent field, an object where a leaf is expected, and an array with no scalar element
  are all "absent": only ``{"exists": false}`` matches them; ``anything-but`` and ``numeric``
  do not. ``{"exists": true}`` matches any present leaf, ``null`` included.
* ``anything-but`` matches any present leaf value (of any JSON type) that the corresponding
  positive test would not match.
* Arrays: a field whose value is an array matches when any scalar element matches; nested
  arrays are flattened. Arrays of objects are matched element by element, and all fields of a
  sub-pattern must match within the same element (event-ruler's "array consistency").
  ``exists: false`` is evaluated per element too (documented choice for a corner where AWS's
  docs say nothing).
* Bad patterns are rejected at compile time with ``InvalidFilterPattern`` naming the filter
  index, the JSON path inside the pattern and the reason.

``changed_attributes`` (beyond Lambda) AND-s one more condition: a MODIFY passes only if one
of the named attributes differs between OldImage and NewImage (raw DynamoDB JSON compared
without decoding, except that numbers compare numerically and SS/NS/BS order-insensitively);
every other event passes, and so does a MODIFY missing an image (so that it reaches the
ChangeRecord validation and the dead-letter path instead of being dropped silently).

Performance: each pattern compiles to closures; patterns are indexed by one "discriminating"
path whose values are exact strings (the deepest such path outside ``$or``), so a record only
evaluates the patterns whose discriminator value it carries, plus unindexed patterns.
Matching never re-reads the pattern, never serialises the record and never builds a regex.
"""

from __future__ import annotations

import base64
import ipaddress
import math
import re
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson

from consumers.shared.errors import InvalidFilterPattern

__all__ = ["CompiledFilter", "InvalidFilterPattern", "compile_filter_criteria"]

_MISSING = object()  # an absent field
_COMPLEX = object()  # an index path runs through an array: evaluate every pattern of that path
_NUMBER_TYPES = (int, float)
_OR = "$or"
_OPERATORS = frozenset(
    {
        "prefix",
        "suffix",
        "equals-ignore-case",
        "wildcard",
        "anything-but",
        "numeric",
        "exists",
        "cidr",
    }
)
# names that cannot be field names inside a $or branch (event-ruler's reserved words)
_RESERVED_IN_OR = _OPERATORS | {"exactly", "=", "<", "<=", ">", ">="}

Matcher = Callable[[Any], bool]


class _PatternError(Exception):
    def __init__(self, path: str, reason: str) -> None:
        super().__init__(reason)
        self.path = path
        self.reason = reason


# ---------------------------------------------------------------------------------------------
# leaf tests
# ---------------------------------------------------------------------------------------------


def _is_number(value: Any) -> bool:
    return type(value) in _NUMBER_TYPES and math.isfinite(value)


class _LeafSpec:
    """Everything one field's value list asks for, grouped by match type."""

    def __init__(self) -> None:
        self.strings: set[str] = set()
        self.numbers: set[float] = set()
        self.literals: list[Any] = []  # True / False / None, compared by identity
        self.prefixes: list[str] = []
        self.suffixes: list[str] = []
        self.ci_equals: set[str] = set()
        self.ci_prefixes: list[str] = []
        self.ci_suffixes: list[str] = []
        self.wildcards: list[str] = []
        self.ranges: list[tuple[float | None, bool, float | None, bool]] = []
        self.networks: list[Any] = []
        self.negations: list[Matcher] = []  # anything-but tests (already negated)
        self.exists_true = False
        self.exists_false = False

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


def _wildcard_regex(patterns: Iterable[str], path: str) -> str:
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
                    raise _PatternError(
                        path, f"wildcard {pattern!r}: a backslash may only escape '*' or '\\'"
                    )
                out.append(re.escape(following))
                index += 2
                previous_star = False
                continue
            if char == "*":
                if previous_star:
                    raise _PatternError(
                        path, f"wildcard {pattern!r}: consecutive wildcard characters"
                    )
                out.append(".*")
                previous_star = True
            else:
                out.append(re.escape(char))
                previous_star = False
            index += 1
        parts.append("(?:" + "".join(out) + ")")
    return "|".join(parts)


def _string_test(spec: _LeafSpec, path: str) -> Matcher | None:
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
        tests.append(_fullmatch(re.compile(_wildcard_regex(spec.wildcards, path), re.DOTALL)))
    if spec.networks:
        networks = tuple(spec.networks)

        def in_network(value: str) -> bool:
            try:
                address = ipaddress.ip_address(value)
            except ValueError:
                return False
            return any(address in network for network in networks)

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


def _range_test(lower: float | None, lower_open: bool, upper: float | None, upper_open: bool) -> Matcher:
    def in_range(number: float) -> bool:
        if lower is not None and (number <= lower if lower_open else number < lower):
            return False
        if upper is not None and (number >= upper if upper_open else number > upper):
            return False
        return True

    return in_range


def _number_test(spec: _LeafSpec) -> Matcher | None:
    tests: list[Matcher] = []
    if spec.numbers:
        tests.append(frozenset(spec.numbers).__contains__)
    for lower, lower_open, upper, upper_open in spec.ranges:
        tests.append(_range_test(lower, lower_open, upper, upper_open))
    return _any_of(tests)


def _value_test(spec: _LeafSpec, path: str) -> Matcher:
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


def _leaves(items: list) -> Iterable[Any]:
    for item in items:
        kind = type(item)
        if kind is list:
            yield from _leaves(item)
        elif kind is not dict:
            yield item


def _leaf_matcher(spec: _LeafSpec, path: str) -> Matcher:
    """Matcher for one field's value list, called with the event's value (or _MISSING)."""
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
        if kind is dict or value is _MISSING:
            return exists_false
        return exists_true or test(value)

    return leaf


def _has_value_tests(spec: _LeafSpec) -> bool:
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


# ---------------------------------------------------------------------------------------------
# pattern compilation
# ---------------------------------------------------------------------------------------------


def _operand_strings(operand: Any, path: str, what: str, *, non_empty: bool = False) -> list[str]:
    values = operand if type(operand) is list else [operand]
    if type(operand) is list and not operand:
        raise _PatternError(path, f"{what} list must not be empty")
    for value in values:
        if type(value) is not str:
            raise _PatternError(path, f"{what} value must be a string, got {_json_type(value)}")
        if non_empty and not value:
            raise _PatternError(path, f"{what} value must not be empty")
    return values


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if type(value) is bool:
        return "boolean"
    if type(value) in _NUMBER_TYPES:
        return "number"
    if type(value) is str:
        return "string"
    if type(value) is list:
        return "array"
    if type(value) is dict:
        return "object"
    return type(value).__name__


def _ignore_case_operand(operand: Any, path: str, operator: str) -> str | None:
    """``{"equals-ignore-case": s}`` under prefix/suffix -> s (lowered); None if operand is a str."""
    if type(operand) is str:
        return None
    if type(operand) is not dict or len(operand) != 1 or "equals-ignore-case" not in operand:
        raise _PatternError(
            path,
            f"{operator} takes a string or {{\"equals-ignore-case\": string}}, got {_json_type(operand)}",
        )
    inner = operand["equals-ignore-case"]
    if type(inner) is not str:
        raise _PatternError(
            f"{path}.equals-ignore-case",
            f"equals-ignore-case value must be a string, got {_json_type(inner)}",
        )
    return inner.lower()


def _add_anything_but(spec: _LeafSpec, operand: Any, path: str) -> None:
    if type(operand) is dict:
        if len(operand) != 1:
            raise _PatternError(path, "anything-but object must have exactly one key")
        ((kind, inner),) = operand.items()
        inner_path = f"{path}.{kind}"
        if kind in ("prefix", "suffix"):
            values = tuple(_operand_strings(inner, inner_path, kind, non_empty=True))
            method = str.startswith if kind == "prefix" else str.endswith
            spec.negations.append(
                lambda value, values=values, method=method: not (
                    type(value) is str and method(value, values)
                )
            )
        elif kind == "equals-ignore-case":
            lowered = frozenset(v.lower() for v in _operand_strings(inner, inner_path, kind))
            spec.negations.append(
                lambda value: not (type(value) is str and value.lower() in lowered)
            )
        elif kind == "wildcard":
            regex = re.compile(
                _wildcard_regex(_operand_strings(inner, inner_path, kind), inner_path), re.DOTALL
            )
            spec.negations.append(
                lambda value: not (type(value) is str and regex.fullmatch(value) is not None)
            )
        else:
            raise _PatternError(path, f"unsupported anything-but pattern: {kind!r}")
        return
    values = operand if type(operand) is list else [operand]
    if type(operand) is list and not operand:
        raise _PatternError(path, "anything-but list must not be empty")
    if all(type(v) is str for v in values):
        excluded = frozenset(values)
        spec.negations.append(lambda value: not (type(value) is str and value in excluded))
    elif all(_is_number(v) for v in values):
        excluded_numbers = frozenset(float(v) for v in values)
        spec.negations.append(
            lambda value: not (
                (type(value) is int or type(value) is float) and float(value) in excluded_numbers
            )
        )
    elif type(operand) is list:
        raise _PatternError(
            path, "anything-but list must hold only strings or only numbers (no mixing, no null/booleans)"
        )
    else:
        raise _PatternError(
            path, f"anything-but takes a string, a number, a list or an object, got {_json_type(operand)}"
        )


_LOWER_OPERATORS = {">": True, ">=": False}  # value: is the bound open
_UPPER_OPERATORS = {"<": True, "<=": False}


def _add_numeric(spec: _LeafSpec, operand: Any, path: str) -> None:
    if type(operand) is not list or not operand:
        raise _PatternError(path, "numeric takes a non-empty array like [\">\", 0, \"<=\", 5]")
    terms = list(operand)
    for position in range(1, len(terms), 2):
        if not _is_number(terms[position]):
            raise _PatternError(
                f"{path}[{position}]", f"numeric bound must be a number, got {_json_type(terms[position])}"
            )
    operator = terms[0]
    if type(operator) is not str:
        raise _PatternError(f"{path}[0]", f"numeric operator must be a string, got {_json_type(operator)}")
    if operator == "=":
        if len(terms) != 2:
            raise _PatternError(path, "numeric [\"=\", x] takes exactly one number")
        spec.numbers.add(float(terms[1]))
        return
    if operator in _UPPER_OPERATORS:
        if len(terms) != 2:
            raise _PatternError(path, f"numeric [\"{operator}\", x] takes exactly one number (put the lower bound first)")
        spec.ranges.append((None, False, float(terms[1]), _UPPER_OPERATORS[operator]))
        return
    if operator not in _LOWER_OPERATORS:
        raise _PatternError(f"{path}[0]", f"unrecognized numeric operator {operator!r}")
    if len(terms) == 2:
        spec.ranges.append((float(terms[1]), _LOWER_OPERATORS[operator], None, False))
        return
    if len(terms) != 4:
        raise _PatternError(path, "numeric range takes [lower-op, x, upper-op, y]")
    upper_operator = terms[2]
    if upper_operator not in _UPPER_OPERATORS:
        raise _PatternError(f"{path}[2]", f"bad numeric range operator {upper_operator!r} (expected < or <=)")
    lower, upper = float(terms[1]), float(terms[3])
    if not lower < upper:
        raise _PatternError(path, f"numeric range bottom {terms[1]} must be less than top {terms[3]}")
    spec.ranges.append(
        (lower, _LOWER_OPERATORS[operator], upper, _UPPER_OPERATORS[upper_operator])
    )


def _add_expression(spec: _LeafSpec, expression: dict, path: str) -> None:
    if len(expression) != 1:
        reason = "empty match expression" if not expression else "only one key allowed in a match expression"
        raise _PatternError(path, reason)
    ((operator, operand),) = expression.items()
    path = f"{path}.{operator}"
    if operator == "prefix" or operator == "suffix":
        lowered = _ignore_case_operand(operand, path, operator)
        if lowered is None:
            (spec.prefixes if operator == "prefix" else spec.suffixes).append(operand)
        else:
            (spec.ci_prefixes if operator == "prefix" else spec.ci_suffixes).append(lowered)
    elif operator == "equals-ignore-case":
        if type(operand) is not str:
            raise _PatternError(path, f"equals-ignore-case value must be a string, got {_json_type(operand)}")
        spec.ci_equals.add(operand.lower())
    elif operator == "wildcard":
        if type(operand) is not str:
            raise _PatternError(path, f"wildcard value must be a string, got {_json_type(operand)}")
        _wildcard_regex([operand], path)  # validate now
        spec.wildcards.append(operand)
    elif operator == "anything-but":
        _add_anything_but(spec, operand, path)
    elif operator == "numeric":
        _add_numeric(spec, operand, path)
    elif operator == "exists":
        if type(operand) is not bool:
            raise _PatternError(path, f"exists value must be true or false, got {_json_type(operand)}")
        if operand:
            spec.exists_true = True
        else:
            spec.exists_false = True
    elif operator == "cidr":
        if type(operand) is not str:
            raise _PatternError(path, f"cidr value must be a string, got {_json_type(operand)}")
        try:
            spec.networks.append(ipaddress.ip_network(operand, strict=False))
        except ValueError as exc:
            raise _PatternError(path, f"bad cidr {operand!r}: {exc}") from exc
    else:
        raise _PatternError(path, f"unrecognized match type {operator!r}")


def _compile_leaf(values: list, path: str) -> tuple[Matcher, frozenset[str] | None]:
    """-> (matcher, the exact strings when the list holds nothing else: an index candidate)."""
    if not values:
        raise _PatternError(path, "empty arrays are not allowed")
    spec = _LeafSpec()
    for index, value in enumerate(values):
        item_path = f"{path}[{index}]"
        kind = type(value)
        if kind is str:
            spec.strings.add(value)
        elif kind is bool or value is None:
            spec.literals.append(value)
        elif kind is int or kind is float:
            if not math.isfinite(value):
                raise _PatternError(item_path, "numbers must be finite")
            spec.numbers.add(float(value))
        elif kind is dict:
            _add_expression(spec, value, item_path)
        else:
            raise _PatternError(
                item_path,
                f"match value must be a string, number, true, false, null or an object, got {_json_type(value)}",
            )
    return _leaf_matcher(spec, path), _gate(spec)


# Index gates: necessary conditions on a string value at one path.
_EXACT, _PREFIX, _SUFFIX = "exact", "prefix", "suffix"
Gate = tuple[str, tuple[str, ...]]


def _wildcard_literals(pattern: str) -> tuple[str, str]:
    """The literal text before the first and after the last unescaped ``*``."""
    pieces: list[str] = [""]
    index = 0
    while index < len(pattern):
        char = pattern[index]
        if char == "\\":
            pieces[-1] += pattern[index + 1 : index + 2]
            index += 2
            continue
        if char == "*":
            pieces.append("")
        else:
            pieces[-1] += char
        index += 1
    if len(pieces) == 1:  # no wildcard at all: the whole string on both sides
        return pieces[0], pieces[0]
    return pieces[0], pieces[-1]


def _gate(spec: _LeafSpec) -> Gate | None:
    """A gate when every way this leaf can match requires a string satisfying it."""
    if (
        spec.numbers
        or spec.literals
        or spec.ci_equals
        or spec.ci_prefixes
        or spec.ci_suffixes
        or spec.ranges
        or spec.networks
        or spec.negations
        or spec.exists_true
        or spec.exists_false
    ):
        return None
    if spec.strings and not (spec.prefixes or spec.suffixes or spec.wildcards):
        return (_EXACT, tuple(sorted(spec.strings)))
    wild = [_wildcard_literals(w) for w in spec.wildcards]
    if not spec.suffixes and all(head for head, _ in wild):
        heads = list(spec.strings) + spec.prefixes + [head for head, _ in wild]
        if heads and all(heads):
            return (_PREFIX, tuple(sorted(set(heads))))
    if not spec.strings and not spec.prefixes and all(tail for _, tail in wild):
        tails = spec.suffixes + [tail for _, tail in wild]
        if tails and all(tails):
            return (_SUFFIX, tuple(sorted(set(tails))))
    return None


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


_EMPTY: dict = {}


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


# ---------------------------------------------------------------------------------------------
# changed attributes
# ---------------------------------------------------------------------------------------------


def _number_value(text: Any) -> Any:
    try:
        return Decimal(text)
    except (InvalidOperation, TypeError, ValueError):
        return ("unparsed", text)


def _blob(value: Any) -> Any:
    if type(value) is str:
        try:
            return base64.b64decode(value)
        except ValueError:
            return value
    return bytes(value) if isinstance(value, (bytes, bytearray, memoryview)) else value


def _same_value(a: Any, b: Any) -> bool:
    """Raw DynamoDB JSON equality: numbers numerically, sets order-insensitively."""
    if a == b:
        return True
    if type(a) is not dict or type(b) is not dict or len(a) != 1 or len(b) != 1:
        return False
    ((tag, x),) = a.items()
    ((other_tag, y),) = b.items()
    if tag != other_tag:
        return False
    try:
        if tag == "N":
            return _number_value(x) == _number_value(y)
        if tag == "SS":
            return set(x) == set(y)
        if tag == "NS":
            return {_number_value(v) for v in x} == {_number_value(v) for v in y}
        if tag == "BS":
            return {_blob(v) for v in x} == {_blob(v) for v in y}
        if tag == "B":
            return _blob(x) == _blob(y)
        if tag == "L":
            return type(x) is list and type(y) is list and len(x) == len(y) and all(
                _same_value(p, q) for p, q in zip(x, y)
            )
        if tag == "M":
            return (
                type(x) is dict
                and type(y) is dict
                and x.keys() == y.keys()
                and all(_same_value(x[k], y[k]) for k in x)
            )
    except TypeError:  # malformed (unhashable set members...): treat as changed
        return False
    return False


def _changed_test(names: tuple[str, ...]) -> Matcher:
    def changed(record: Any) -> bool:
        if type(record) is not dict or record.get("eventName") != "MODIFY":
            return True
        body = record.get("dynamodb")
        if type(body) is not dict:
            return True
        old = body.get("OldImage")
        new = body.get("NewImage")
        if type(old) is not dict or type(new) is not dict:
            return True
        for name in names:
            if not _same_value(old.get(name), new.get(name)):
                return True
        return False

    return changed


# ---------------------------------------------------------------------------------------------
# public API
# ---------------------------------------------------------------------------------------------


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
        patterns: list[_CompiledPattern],
        changed_attributes: tuple[str, ...],
    ) -> None:
        by_path: dict[tuple[str, ...], dict[str, list]] = {}
        unindexed: list[Matcher] = []
        for matcher, choice, reduce in _choose(patterns):
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
