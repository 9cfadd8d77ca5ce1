"""Parsing a field's value list (exact values and operators) into a leaf matcher and an index gate."""

from __future__ import annotations

import ipaddress
import math
import re
from dataclasses import dataclass
from typing import Any

from consumers.shared.filtering._common import InexactNumber, Matcher, PatternError, is_number, json_type
from consumers.shared.filtering._leaf import LeafSpec, Range, ip_literal, leaf_matcher, wildcard_regex
from consumers.shared.filtering._numbers import number_operand

__all__ = ["EXACT", "PREFIX", "SUFFIX", "Gate", "Leaf", "compile_leaf"]

# Index gates: necessary conditions on a string value at one path.
EXACT, PREFIX, SUFFIX = "exact", "prefix", "suffix"


@dataclass(frozen=True, slots=True)
class Gate:
    """A string value at the field's path must equal one of ``strings`` (EXACT), or start
    (PREFIX) or end (SUFFIX) with one of them, for the field to match."""

    kind: str
    strings: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Leaf:
    """A field's value list, compiled: ``matcher`` tests the event's value there (or MISSING),
    ``gate`` is its index gate if it has one, ``absent_ok`` whether ``{"exists": false}`` is
    among the values."""

    matcher: Matcher
    gate: Gate | None
    absent_ok: bool


def _operand_strings(operand: Any, path: str, what: str, *, non_empty: bool = False) -> list[str]:
    values = operand if type(operand) is list else [operand]
    if type(operand) is list and not operand:
        raise PatternError(path, f"{what} list must not be empty")
    for value in values:
        if type(value) is not str:
            raise PatternError(path, f"{what} value must be a string, got {json_type(value)}")
        if non_empty and not value:
            raise PatternError(path, f"{what} value must not be empty")
    return values


def _ignore_case_operand(operand: Any, path: str, operator: str) -> str | None:
    """``{"equals-ignore-case": s}`` under prefix/suffix -> s (lowered); None if operand is a str."""
    if type(operand) is str:
        return None
    if type(operand) is not dict or len(operand) != 1 or "equals-ignore-case" not in operand:
        raise PatternError(
            path,
            f'{operator} takes a string or {{"equals-ignore-case": string}}, got {json_type(operand)}',
        )
    inner = operand["equals-ignore-case"]
    if type(inner) is not str:
        raise PatternError(
            f"{path}.equals-ignore-case",
            f"equals-ignore-case value must be a string, got {json_type(inner)}",
        )
    return inner.lower()


def _add_anything_but(spec: LeafSpec, operand: Any, path: str) -> None:
    if type(operand) is dict:
        if len(operand) != 1:
            raise PatternError(path, "anything-but object must have exactly one key")
        ((kind, inner),) = operand.items()
        inner_path = f"{path}.{kind}"
        if kind in ("prefix", "suffix"):
            strings = tuple(_operand_strings(inner, inner_path, kind, non_empty=True))
            if kind == "prefix":
                spec.negations.append(lambda value: not (type(value) is str and value.startswith(strings)))
            else:
                spec.negations.append(lambda value: not (type(value) is str and value.endswith(strings)))
        elif kind == "equals-ignore-case":
            lowered = frozenset(v.lower() for v in _operand_strings(inner, inner_path, kind))
            spec.negations.append(lambda value: not (type(value) is str and value.lower() in lowered))
        elif kind == "wildcard":
            regex = re.compile(wildcard_regex(_operand_strings(inner, inner_path, kind), inner_path), re.DOTALL)
            spec.negations.append(lambda value: not (type(value) is str and regex.fullmatch(value) is not None))
        else:
            raise PatternError(path, f"unsupported anything-but pattern: {kind!r}")
        return
    values: list[Any] = operand if type(operand) is list else [operand]
    if type(operand) is list and not operand:
        raise PatternError(path, "anything-but list must not be empty")
    if all(type(v) is str for v in values):
        excluded = frozenset(values)
        spec.negations.append(lambda value: not (type(value) is str and value in excluded))
    elif all(is_number(v) or type(v) is InexactNumber for v in values):
        excluded_numbers = frozenset(
            number_operand(v, f"{path}[{index}]" if type(operand) is list else path, "anything-but number")
            for index, v in enumerate(values)
        )
        spec.negations.append(
            lambda value: not ((type(value) is int or type(value) is float) and float(value) in excluded_numbers)
        )
    elif type(operand) is list:
        raise PatternError(
            path, "anything-but list must hold only strings or only numbers (no mixing, no null/booleans)"
        )
    else:
        raise PatternError(
            path, f"anything-but takes a string, a number, a list or an object, got {json_type(operand)}"
        )


_LOWER_OPERATORS = {">": True, ">=": False}  # value: is the bound open
_UPPER_OPERATORS = {"<": True, "<=": False}


def _add_numeric(spec: LeafSpec, operand: Any, path: str) -> None:
    if type(operand) is not list or not operand:
        raise PatternError(path, 'numeric takes a non-empty array like [">", 0, "<=", 5]')
    terms = list(operand)
    for position in range(1, len(terms), 2):
        terms[position] = number_operand(terms[position], f"{path}[{position}]", "numeric bound")
    operator = terms[0]
    if type(operator) is not str:
        raise PatternError(f"{path}[0]", f"numeric operator must be a string, got {json_type(operator)}")
    if operator == "=":
        if len(terms) != 2:
            raise PatternError(path, 'numeric ["=", x] takes exactly one number')
        spec.numbers.add(terms[1])
        return
    if operator in _UPPER_OPERATORS:
        if len(terms) != 2:
            raise PatternError(path, f'numeric ["{operator}", x] takes exactly one number (put the lower bound first)')
        spec.ranges.append(Range(None, False, terms[1], _UPPER_OPERATORS[operator]))
        return
    if operator not in _LOWER_OPERATORS:
        raise PatternError(f"{path}[0]", f"unrecognized numeric operator {operator!r}")
    if len(terms) == 2:
        spec.ranges.append(Range(terms[1], _LOWER_OPERATORS[operator], None, False))
        return
    if len(terms) != 4:
        raise PatternError(path, "numeric range takes [lower-op, x, upper-op, y]")
    upper_operator = terms[2]
    if type(upper_operator) is not str or upper_operator not in _UPPER_OPERATORS:
        raise PatternError(f"{path}[2]", f"bad numeric range operator {upper_operator!r} (expected < or <=)")
    lower, upper = terms[1], terms[3]
    if not lower < upper:
        raise PatternError(path, f"numeric range bottom {operand[1]} must be less than top {operand[3]}")
    spec.ranges.append(Range(lower, _LOWER_OPERATORS[operator], upper, _UPPER_OPERATORS[upper_operator]))


def _network(cidr: str, path: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """``address/bits`` as event-ruler takes it: one slash, the address read as ``ip_literal``
    reads it, host bits may be set, and a single address (/32, /128) is refused."""
    text, slash, bits = cidr.partition("/")
    if not slash or "/" in bits:
        raise PatternError(path, f"bad cidr {cidr!r}: one '/' required")
    if not bits.isascii() or not bits.isdigit():
        raise PatternError(path, f"bad cidr {cidr!r}: mask bits must be a non-negative integer")
    address = ip_literal(text)
    if address is None:
        raise PatternError(path, f"bad cidr {cidr!r}: {text!r} is not an IP address")
    if int(bits) >= address.max_prefixlen:
        raise PatternError(path, f"bad cidr {cidr!r}: mask bits must be < {address.max_prefixlen}")
    return ipaddress.ip_network((address, int(bits)), strict=False)


def _add_expression(spec: LeafSpec, expression: dict[str, Any], path: str) -> None:
    if len(expression) != 1:
        reason = "empty match expression" if not expression else "only one key allowed in a match expression"
        raise PatternError(path, reason)
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
            raise PatternError(path, f"equals-ignore-case value must be a string, got {json_type(operand)}")
        spec.ci_equals.add(operand.lower())
    elif operator == "wildcard":
        if type(operand) is not str:
            raise PatternError(path, f"wildcard value must be a string, got {json_type(operand)}")
        wildcard_regex([operand], path)  # validate now
        spec.wildcards.append(operand)
    elif operator == "anything-but":
        _add_anything_but(spec, operand, path)
    elif operator == "numeric":
        _add_numeric(spec, operand, path)
    elif operator == "exists":
        if type(operand) is not bool:
            raise PatternError(path, f"exists value must be true or false, got {json_type(operand)}")
        if operand:
            spec.exists_true = True
        else:
            spec.exists_false = True
    elif operator == "cidr":
        if type(operand) is not str:
            raise PatternError(path, f"cidr value must be a string, got {json_type(operand)}")
        spec.networks.append(_network(operand, path))
    else:
        raise PatternError(path, f"unrecognized match type {operator!r}")


def compile_leaf(values: list[Any], path: str) -> Leaf:
    """A field's value list (at ``path`` in the pattern), compiled."""
    if not values:
        raise PatternError(path, "empty arrays are not allowed")
    spec = LeafSpec()
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
                raise PatternError(item_path, "numbers must be finite")
            spec.numbers.add(float(value))
        elif kind is InexactNumber:  # an exact value, not an operand: the double it reads as
            spec.numbers.add(value.nearest)
        elif kind is dict:
            _add_expression(spec, value, item_path)
        else:
            raise PatternError(
                item_path,
                f"match value must be a string, number, true, false, null or an object, got {json_type(value)}",
            )
    return Leaf(leaf_matcher(spec, path), _gate(spec), spec.exists_false)


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


def _gate(spec: LeafSpec) -> Gate | None:
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
        return Gate(EXACT, tuple(sorted(spec.strings)))
    wild = [_wildcard_literals(w) for w in spec.wildcards]
    if not spec.suffixes and all(head for head, _ in wild):
        heads = list(spec.strings) + spec.prefixes + [head for head, _ in wild]
        if heads and all(heads):
            return Gate(PREFIX, tuple(sorted(set(heads))))
    if not spec.strings and not spec.prefixes and all(tail for _, tail in wild):
        tails = spec.suffixes + [tail for _, tail in wild]
        if tails and all(tails):
            return Gate(SUFFIX, tuple(sorted(set(tails))))
    return None
