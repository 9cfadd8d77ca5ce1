"""decode_image / encode_image: tables, errors with paths, and properties against boto3."""

from __future__ import annotations

import base64
from decimal import Decimal

import pytest
from boto3.dynamodb.types import Binary, TypeDeserializer
from hypothesis import given, settings
from hypothesis import strategies as st

from consumers.shared.errors import DynamoJsonError
from consumers.shared.records import (
    BinaryFormat,
    decode_image,
    decode_value,
    encode_image,
    encode_value,
)

# --- decoding: one row per type ----------------------------------------------------------------

DECODE_TABLE = [
    ({"S": "x"}, "x"),
    ({"S": ""}, ""),
    ({"N": "5"}, 5),
    ({"N": "-12"}, -12),
    ({"N": "1.0"}, 1),
    ({"N": "1E+2"}, 100),
    ({"N": "-0"}, 0),
    ({"N": "1.50"}, Decimal("1.50")),
    ({"N": "-0.001"}, Decimal("-0.001")),
    ({"N": "1e-130"}, Decimal("1e-130")),
    ({"B": "aGVsbG8="}, b"hello"),
    ({"B": b"raw"}, b"raw"),
    ({"BOOL": True}, True),
    ({"BOOL": False}, False),
    ({"NULL": True}, None),
    ({"SS": ["a", "b"]}, {"a", "b"}),
    ({"NS": ["1", "2.5"]}, {1, Decimal("2.5")}),
    ({"BS": ["AQ==", "Ag=="]}, {b"\x01", b"\x02"}),
    ({"L": [{"S": "a"}, {"N": "1"}, {"L": []}]}, ["a", 1, []]),
    ({"M": {"a": {"M": {"b": {"L": [{"NULL": True}]}}}}}, {"a": {"b": [None]}}),
]


@pytest.mark.parametrize(("raw", "expected"), DECODE_TABLE)
def test_decode_value(raw, expected):
    value = decode_value(raw)
    assert value == expected
    assert type(value) is type(expected)


def test_decoded_numbers_are_never_float():
    decoded = decode_image({"a": {"N": "0.5"}, "b": {"N": "3"}, "c": {"NS": ["0.1", "7"]}})
    assert type(decoded["a"]) is Decimal and type(decoded["b"]) is int
    assert all(type(v) in (int, Decimal) for v in decoded["c"])


BAD_VALUES = [
    ({"S": 1}, "S value must be a string"),
    ({"N": 5}, "N value must be a string"),
    ({"N": "abc"}, "is not a number"),
    ({"N": "NaN"}, "is not a number"),
    ({"N": "1_000"}, "is not a number"),
    ({"N": " 1"}, "is not a number"),
    ({"N": "1E+200"}, "outside DynamoDB's number range"),
    ({"B": "not base64!"}, "not valid base64"),
    ({"BOOL": "true"}, "BOOL value must be true or false"),
    ({"NULL": False}, "NULL value must be true"),
    ({"SS": []}, "empty set"),
    ({"SS": ["a", "a"]}, "holds duplicates"),
    ({"NS": ["1", "1.0"]}, "holds duplicates"),
    ({"BS": ["YQ==", "YQ=="]}, "holds duplicates"),
    ({"SS": "a"}, "must be a list"),
    ({"X": "a"}, "unknown DynamoDB type"),
    ({"S": "a", "N": "1"}, "exactly one type key"),
    ("plain", "expected a DynamoDB JSON object"),
    ({"M": []}, "M value must be an object"),
    ({"L": {}}, "L value must be a list"),
]


@pytest.mark.parametrize(("raw", "reason"), BAD_VALUES)
def test_decode_rejects(raw, reason):
    with pytest.raises(DynamoJsonError, match=reason):
        decode_image({"Attr": raw})


@pytest.mark.parametrize(
    ("image", "path"),
    [
        ({"Address": {"M": {"Lines": {"L": [{"S": "a"}, {"S": "b"}, {"N": "x"}]}}}}, "Address.Lines[2]"),
        ({"Tags": {"SS": ["a", 3]}}, "Tags[1]"),
        ({"Nums": {"NS": ["1", "z"]}}, "Nums[1]"),
        ({"Deep": {"L": [{"M": {"k": {"BOOL": 1}}}]}}, "Deep[0].k"),
    ],
)
def test_decode_error_names_the_attribute_path(image, path):
    with pytest.raises(DynamoJsonError) as caught:
        decode_image(image)
    assert caught.value.path == path
    assert str(caught.value).startswith(path)


# --- encoding ----------------------------------------------------------------------------------

ENCODE_TABLE = [
    ("x", {"S": "x"}),
    (True, {"BOOL": True}),
    (None, {"NULL": True}),
    (7, {"N": "7"}),
    (Decimal("1.50"), {"N": "1.50"}),
    (b"hello", {"B": "aGVsbG8="}),
    (bytearray(b"\x01"), {"B": "AQ=="}),
    ({"b", "a"}, {"SS": ["a", "b"]}),
    (frozenset({3, Decimal("1.5")}), {"NS": ["1.5", "3"]}),
    ({b"\x02", b"\x01"}, {"BS": ["AQ==", "Ag=="]}),
    ([1, "a"], {"L": [{"N": "1"}, {"S": "a"}]}),
    ((1,), {"L": [{"N": "1"}]}),
    ({"k": {"n": None}}, {"M": {"k": {"M": {"n": {"NULL": True}}}}}),
]


@pytest.mark.parametrize(("value", "expected"), ENCODE_TABLE)
def test_encode_value(value, expected):
    assert encode_value(value) == expected


def test_encode_raw_binary_keeps_bytes_for_boto3_clients():
    assert encode_image({"b": b"\x00", "s": {b"\x01"}}, binary=BinaryFormat.RAW) == {
        "b": {"B": b"\x00"},
        "s": {"BS": [b"\x01"]},
    }


@pytest.mark.parametrize(
    ("item", "path", "reason"),
    [
        ({"f": 1.5}, "f", "float is not supported"),
        ({"m": {"inner": [0.1]}}, "m.inner[0]", "float is not supported"),
        ({"s": set()}, "s", "empty sets"),
        ({"s": {"a", 1}}, "s", "only str, only numbers or only bytes"),
        ({"s": {True}}, "s", "only str, only numbers or only bytes"),
        ({"o": object()}, "o", "unsupported type object"),
        ({"d": Decimal("NaN")}, "d", "not finite"),
        ({"d": Decimal("Infinity")}, "d", "not finite"),
        ({"m": {1: "x"}}, "m", "map keys must be str"),
    ],
)
def test_encode_rejects(item, path, reason):
    with pytest.raises(DynamoJsonError, match=reason) as caught:
        encode_image(item)
    assert caught.value.path == path


# --- properties --------------------------------------------------------------------------------

_names = st.text(min_size=1, max_size=8)
_numbers = st.one_of(
    st.integers(min_value=-(10**38) + 1, max_value=10**38 - 1),
    st.decimals(allow_nan=False, allow_infinity=False, places=6, min_value=-(10**20), max_value=10**20),
)


def _n(number) -> dict:
    return {"N": str(number)}


ddb_scalars = st.one_of(
    st.text(max_size=12).map(lambda s: {"S": s}),
    _numbers.map(_n),
    st.binary(max_size=12).map(lambda b: {"B": base64.b64encode(b).decode()}),
    st.booleans().map(lambda b: {"BOOL": b}),
    st.just({"NULL": True}),
    st.lists(st.text(max_size=6), min_size=1, max_size=4, unique=True).map(lambda v: {"SS": v}),
    st.lists(st.integers(-1000, 1000), min_size=1, max_size=4, unique=True).map(lambda v: {"NS": [str(x) for x in v]}),
    st.lists(st.binary(min_size=1, max_size=6), min_size=1, max_size=4, unique=True).map(
        lambda v: {"BS": [base64.b64encode(x).decode() for x in v]}
    ),
)
ddb_values = st.recursive(
    ddb_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4).map(lambda v: {"L": v}),
        st.dictionaries(_names, children, max_size=4).map(lambda v: {"M": v}),
    ),
    max_leaves=12,
)
ddb_images = st.dictionaries(_names, ddb_values, max_size=6)


def _for_boto3(value):
    """TypeDeserializer wants B/BS as bytes, not base64 text."""
    ((tag, inner),) = value.items()
    if tag == "B":
        return {"B": base64.b64decode(inner)}
    if tag == "BS":
        return {"BS": [base64.b64decode(x) for x in inner]}
    if tag == "L":
        return {"L": [_for_boto3(x) for x in inner]}
    if tag == "M":
        return {"M": {k: _for_boto3(x) for k, x in inner.items()}}
    return value


def _comparable(value):
    """boto3 and our decoding in one shape: numbers as Decimal, Binary as bytes."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, Decimal)):
        return Decimal(value)
    if isinstance(value, (bytes, Binary)):
        return bytes(value)
    if isinstance(value, (set, frozenset)):
        return frozenset(_comparable(v) for v in value)
    if isinstance(value, list):
        return [_comparable(v) for v in value]
    if isinstance(value, dict):
        return {k: _comparable(v) for k, v in value.items()}
    raise AssertionError(f"unexpected decoded type {type(value)}")


@settings(max_examples=150, deadline=None)
@given(ddb_images)
def test_decode_agrees_with_boto3_type_deserializer(image):
    ours = decode_image(image)
    deserializer = TypeDeserializer()
    theirs = {k: deserializer.deserialize(_for_boto3(v)) for k, v in image.items()}
    assert _comparable(ours) == _comparable(theirs)


@settings(max_examples=150, deadline=None)
@given(ddb_images)
def test_decode_encode_round_trip(image):
    decoded = decode_image(image)
    assert decode_image(encode_image(decoded)) == decoded
    raw = encode_image(decoded, binary=BinaryFormat.RAW)
    assert decode_image(raw) == decoded


@settings(max_examples=100, deadline=None)
@given(_numbers)
def test_numbers_decode_to_int_exactly_when_integral(number):
    value = decode_value({"N": str(number)})
    assert Decimal(value) == Decimal(number)
    assert (type(value) is int) == (Decimal(number) == Decimal(number).to_integral_value())
