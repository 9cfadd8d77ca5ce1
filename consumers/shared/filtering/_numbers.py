"""Numeric operands (``numeric`` bounds, ``anything-but`` numbers) as event-ruler takes them.

event-ruler (``ComparableNumber.generate``) refuses an operand unless the double nearest to its
text reads back as that same number: the text must equal, as a decimal, what Java's
``Double.toString`` writes for that double -- the shortest decimal that reads back as it (Python's
``repr``), with two digits where one would do if two come closer (``Double.MIN_VALUE`` is
``4.9E-324``, not ``5e-324``). So ``0.1``, ``1e-320`` and ``4.9e-324`` are fine, while ``1E-325``
(underflows to 0), ``2.5e-324`` and ``5e-324`` (underflow to 4.9e-324), ``9007199254740993`` and
``1.0000000000000001`` (more digits than a double holds) are refused; ``1E309`` (infinity) is
malformed JSON already. Exact values (``{"x": [1E-325]}``) are not operands: event-ruler takes
them, and so do we (as the double they read as).

We follow ``Double.toString`` as specified since JDK 19. Older JDKs (the conformance oracle runs
JDK 17) do not always write the shortest decimal (``1e23`` as ``9.999999999999999E22``, the double
nearest ``2.82879384806159E17`` with 18 digits, ``1.0E-323`` where the specification says
``9.9E-324``), so event-ruler on them also refuses a few operands that we take.

orjson reads ``1E-325`` as ``0.0``: the text is lost. So a pattern's JSON text with a number
literal that fails the test is read again with the standard library, which keeps those
literals as ``InexactNumber``; every other pattern is the object orjson made.
"""

from __future__ import annotations

import json
import math
import re
import sys
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal, InvalidOperation, localcontext
from typing import Any

import orjson

from consumers.shared.filtering._common import InexactNumber, PatternError, is_number, json_type

__all__ = ["load_pattern", "number_operand"]

# a JSON number; run over the whole text it also finds digits inside strings, which only costs
# a second reading of that pattern
_NUMBER_TOKEN = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?")


def _java_decimal(double: float) -> Decimal:
    """The decimal Java's ``Double.toString`` writes for a finite double (JDK 19+)."""
    shortest = Decimal(repr(double))
    if double == 0 or len(shortest.normalize().as_tuple().digits) > 1:
        return shortest
    # one digit would do: the closest decimal of one or two digits that reads back as the double
    # (differs from the shortest only for the least subnormals, whose neighbours are far apart)
    exact = Decimal(double)
    two_digits = Decimal(1).scaleb(exact.adjusted() - 1)
    with localcontext() as context:
        context.prec = 1000  # more digits than any double has: the differences below are exact
        candidates = [exact.quantize(two_digits, rounding) for rounding in (ROUND_FLOOR, ROUND_CEILING)]
        return min((c for c in candidates if float(c) == double), key=lambda c: abs(c - exact))


def _reads_back(number: int | Decimal) -> bool:
    """True when ``number`` is what ``Double.toString`` writes for the double nearest to it."""
    try:
        nearest = float(number)
    except OverflowError:  # an int beyond the doubles
        return False
    return math.isfinite(nearest) and _java_decimal(nearest) == number


def _exact_literal(text: str) -> bool:
    try:
        return _reads_back(Decimal(text))
    except InvalidOperation:  # an exponent Decimal does not take: far beyond the doubles
        return False


def _literal(text: str, kind: type) -> Any:
    return kind(text) if _exact_literal(text) else InexactNumber(text, float(text))


def load_pattern(text: str | bytes) -> Any:
    """A pattern's JSON text as an object (``orjson.JSONDecodeError`` when malformed), with the
    number literals event-ruler refuses as operands kept as ``InexactNumber``."""
    pattern = orjson.loads(text)
    source = text.decode() if isinstance(text, bytes) else text
    if all(_exact_literal(token) for token in _NUMBER_TOKEN.findall(source)):
        return pattern
    return json.loads(
        source,
        parse_float=lambda token: _literal(token, float),
        parse_int=lambda token: _literal(token, int),
    )


def number_operand(value: Any, path: str, what: str) -> float:
    """``value`` as the double a numeric operand compares with; PatternError at ``path`` when it
    is not a number or when event-ruler would refuse it (the module docstring)."""
    if type(value) is InexactNumber:
        text, nearest = value.text, value.nearest
    elif type(value) is int and not _reads_back(value):  # an int of a pattern given as an object
        text = str(value) if value.bit_length() < 4000 else f"an integer of {value.bit_length()} bits"
        try:
            nearest = float(value)
        except OverflowError:
            nearest = math.inf
    elif is_number(value):
        return float(value)
    else:
        raise PatternError(path, f"{what} must be a number, got {json_type(value)}")
    if math.isinf(nearest):
        why = "it overflows"
    else:
        why = f"the nearest double reads as {_java_decimal(nearest).normalize()}"
        if abs(nearest) < sys.float_info.min:
            why = f"it underflows, {why}"
    raise PatternError(path, f"{what} {text} cannot be compared as a double: {why}")
