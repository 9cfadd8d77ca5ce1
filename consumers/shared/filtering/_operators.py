"""Parsing a field's value list (exact values and operators) into a leaf matcher and an index gate."""

from __future__ import annotations

import ipaddress
import math
import re
from typing import Any

from consumers.shared.filtering._common import Matcher, _PatternError, _is_number, _json_type
from consumers.shared.filtering._leaf import _LeafSpec, _leaf_matcher, _wildcard_regex, ip_literal


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


def _network(cidr: str, path: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """``address/bits`` as event-ruler takes it: one slash, the address read as ``ip_literal``
    reads it, host bits may be set, and a single address (/32, /128) is refused."""
    text, slash, bits = cidr.partition("/")
    if not slash or "/" in bits:
        raise _PatternError(path, f"bad cidr {cidr!r}: one '/' required")
    if not bits.isascii() or not bits.isdigit():
        raise _PatternError(path, f"bad cidr {cidr!r}: mask bits must be a non-negative integer")
    address = ip_literal(text)
    if address is None:
        raise _PatternError(path, f"bad cidr {cidr!r}: {text!r} is not an IP address")
    if int(bits) >= address.max_prefixlen:
        raise _PatternError(path, f"bad cidr {cidr!r}: mask bits must be < {address.max_prefixlen}")
    return ipaddress.ip_network((address, int(bits)), strict=False)


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
        spec.networks.append(_network(operand, path))
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
            address = ip_literal(value)
            if address is None:
                spec.strings.add(value)
            else:  # as in event-ruler: an IP address matches however it is written
                spec.networks.append(ipaddress.ip_network(address))
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
