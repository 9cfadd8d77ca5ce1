"""Hypothesis strategies for filter conformance: patterns over the whole Lambda / EventBridge
grammar and events built from the same few field names and values, so that they meet often."""

from __future__ import annotations

from hypothesis import strategies as st

from consumers.shared import envelope
from tests.records import change

__all__ = ["events", "patterns"]

KEYS = ("a", "b", "c", "z")
STRINGS = (
    "x",
    "y",
    "xy",
    "X",
    "xY",
    "",
    "5",
    "1.5",
    "10.0.0.7",
    "x*y",
    "ab*",
    "Éa",
    "éA",
    "straße",
    "İx",
    "2001:db8::1",
    "010.0.0.7",
    "10.0.0.256",
    "::ffff:10.0.0.7",
    "*",
    'x"y',
    "a\\b",
)
NUMBERS = (
    0,
    1,
    5,
    5.0,
    -1,
    1.5,
    2.25,
    1000,
    1e3,
    0.1,
    0.30000000000000004,
    1e10,
    -5000000000.5,
    1.0000001,
    123456789012,
)
SUBSTRINGS = ("x", "y", "X", "xy", "1", "10.", "é", "É", "STRASSE", "ß")

_scalar_events = st.one_of(
    st.sampled_from(STRINGS),
    st.sampled_from(NUMBERS),
    st.sampled_from((None, True, False)),
)
_events = st.recursive(
    _scalar_events,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.sampled_from(KEYS), inner, max_size=3),
    ),
    max_leaves=8,
)
#: events: JSON objects whose leaves are the strings, numbers and literals above
events = st.dictionaries(st.sampled_from(KEYS), _events, max_size=3)

_substring = st.sampled_from(SUBSTRINGS)
_strings_or_list = st.one_of(_substring, st.lists(_substring, min_size=1, max_size=2))
_number = st.sampled_from(NUMBERS)
_wildcard = st.sampled_from(("x*", "*y", "x*y", "*", "a*", "ab\\*", "1*5", "*x*", "x*y*", "*\\**", "a\\\\b", "É*"))
_anything_but = st.one_of(
    st.sampled_from(STRINGS),
    _number,
    st.lists(st.sampled_from(STRINGS), min_size=1, max_size=2),
    st.lists(_number, min_size=1, max_size=2),
    st.fixed_dictionaries({"prefix": _substring}),
    st.fixed_dictionaries({"suffix": _substring}),
    st.fixed_dictionaries({"equals-ignore-case": _strings_or_list}),
    st.fixed_dictionaries({"wildcard": _wildcard}),
)
_numeric = st.one_of(
    st.tuples(st.sampled_from(("=", "<", "<=", ">", ">=")), _number).map(list),
    st.tuples(
        st.sampled_from((">", ">=")),
        st.sampled_from((-1, 0, 1)),
        st.sampled_from(("<", "<=")),
        st.sampled_from((2, 5, 1000)),
    ).map(list),
)
#: rules that are wrong in some way: both sides must reject them
_invalid_rule = st.sampled_from(
    (
        {"prefix": ""},
        {"suffix": ""},
        {"prefix": 1},
        {"equals-ignore-case": 5},
        {"anything-but": []},
        {"anything-but": [1, "x"]},
        {"anything-but": None},
        {"anything-but": {"prefix": ""}},
        {"anything-but": {"numeric": [">", 1]}},
        {"numeric": [">", 5, "<", 1]},
        {"numeric": ["=", "5"]},
        {"numeric": []},
        {"numeric": ["<", 1, ">", 0]},
        {"numeric": [">", 1, ">", 2]},
        {"exists": "true"},
        {"exists": 1},
        {"wildcard": "a**b"},
        {"wildcard": 5},
        {"cidr": "10.0.0.0/33"},
        {"cidr": "x"},
        {"unknown-op": 1},
        {},
        {"prefix": "x", "suffix": "y"},
        [],
        ["x", []],
        {"prefix": {"equals-ignore-case": 1}},
    )
)
_rule = st.one_of(
    st.sampled_from(STRINGS),
    _number,
    st.sampled_from((None, True, False)),
    st.fixed_dictionaries({"prefix": _substring}),
    st.fixed_dictionaries({"suffix": _substring}),
    st.fixed_dictionaries({"equals-ignore-case": _substring}),
    st.fixed_dictionaries({"prefix": st.fixed_dictionaries({"equals-ignore-case": _substring})}),
    st.fixed_dictionaries({"suffix": st.fixed_dictionaries({"equals-ignore-case": _substring})}),
    st.fixed_dictionaries({"wildcard": _wildcard}),
    st.fixed_dictionaries({"anything-but": _anything_but}),
    st.fixed_dictionaries({"numeric": _numeric}),
    st.fixed_dictionaries({"exists": st.booleans()}),
    st.fixed_dictionaries(
        {
            "cidr": st.sampled_from(
                (
                    "10.0.0.0/24",
                    "10.0.1.0/24",
                    "10.0.0.7/32",
                    "2001:db8::/32",
                    "10.0.0.7",
                    "10.0.0.7/24",
                    "::1/64",
                    "10.0.0.0/0",
                    "10.0.0.0/08",
                    "010.0.0.0/8",
                    "10.0.0.0/-1",
                )
            )
        }
    ),
)
_leaf = st.lists(_rule, min_size=1, max_size=3)
_maybe_invalid_leaf = st.one_of(
    _leaf,
    st.lists(st.one_of(_rule, _invalid_rule), min_size=1, max_size=2),
    st.sampled_from(([], "x", 5, None, True)),  # a leaf that is not a non-empty array
)


def _objects(inner):
    return st.dictionaries(st.sampled_from(KEYS), inner, min_size=1, max_size=2)


_plain = st.recursive(_objects(_leaf), lambda inner: _objects(st.one_of(_leaf, inner)), max_leaves=4)


def _with_or(body):
    return st.tuples(body, st.lists(body, min_size=2, max_size=2)).map(lambda t: {**t[0], "$or": t[1]})


#: patterns: nested objects of value lists, sometimes with a top-level $or
patterns = st.one_of(_plain, _with_or(_plain))

_bad_plain = st.recursive(
    _objects(_maybe_invalid_leaf),
    lambda inner: _objects(st.one_of(_maybe_invalid_leaf, inner, st.just({}))),
    max_leaves=3,
)
#: patterns that may be wrong anywhere: bad operands, empty arrays and objects, bad $or
maybe_invalid_patterns = st.one_of(
    _bad_plain,
    _with_or(_bad_plain),
    _bad_plain.map(lambda p: {**p, "$or": [p]}),
    _bad_plain.map(lambda p: {**p, "$or": []}),
    _bad_plain.map(lambda p: {**p, "$or": ["x", p]}),
)


# --- DynamoDB change records, as they sit in the stream ---------------------------------------

_TABLES = ("Users", "WorkplaceUsers_V2")
_WORKPLACES = ("w-1", "w-2", "w-3")
_attributes = st.fixed_dictionaries(
    {"UserId": st.sampled_from(("u-1", "u-2")).map(lambda v: {"S": v})},
    optional={
        "Email": st.sampled_from(("a@example.com", "b@example.org", "")).map(lambda v: {"S": v}),
        "Status": st.sampled_from(("active", "suspended", "ACTIVE")).map(lambda v: {"S": v}),
        "Version": st.sampled_from(("1", "7", "10", "1.5")).map(lambda v: {"N": v}),
        "WorkplaceIds": st.lists(st.sampled_from(_WORKPLACES), min_size=1, max_size=3, unique=True).map(
            lambda v: {"SS": v}
        ),
        "Roles": st.lists(st.sampled_from(("admin", "user")), max_size=2).map(lambda v: {"L": [{"S": r} for r in v]}),
        "Address": st.fixed_dictionaries(
            {}, optional={"City": st.just({"S": "Berlin"}), "Zip": st.just({"N": "10115"})}
        ).map(lambda v: {"M": v}),
        "Deleted": st.sampled_from(({"NULL": True}, {"BOOL": True}, {"BOOL": False})),
        "_cdc_tombstone": st.just({"BOOL": True}),
    },
)


@st.composite
def change_records(draw) -> dict:
    """A change record in the DynamoDB -> Kinesis format (the images are optional by event)."""
    event = draw(st.sampled_from(("INSERT", "MODIFY", "REMOVE")))
    new_image = draw(_attributes) if event != "REMOVE" else None
    old_image = draw(_attributes) if event != "INSERT" else None
    identity = draw(st.sampled_from((None, envelope.identity("dynamodb.amazonaws.com", "Service"))))
    return change(
        event,
        draw(st.sampled_from(_TABLES)),
        {"UserId": {"S": "u-1"}},
        new_image=new_image,
        old_image=old_image,
        event_id="e-1",
        user_identity=identity,
        size_bytes=100,
    )


_image_rule = st.one_of(
    st.fixed_dictionaries(
        {
            "S": st.lists(
                st.one_of(
                    st.sampled_from(("active", "a@example.com", "w-1", "admin", "Berlin")),
                    st.fixed_dictionaries({"prefix": st.sampled_from(("a", "w-", "b@"))}),
                    st.fixed_dictionaries({"suffix": st.sampled_from((".org", ".com"))}),
                    st.fixed_dictionaries({"equals-ignore-case": st.just("ACTIVE")}),
                    st.fixed_dictionaries({"anything-but": st.sampled_from(("active", ["w-1", "w-2"]))}),
                    st.fixed_dictionaries({"exists": st.booleans()}),
                ),
                min_size=1,
                max_size=2,
            )
        }
    ),
    st.fixed_dictionaries(
        {
            "N": st.lists(
                st.one_of(
                    st.sampled_from(("7", "10")),
                    st.fixed_dictionaries({"numeric": st.just([">", 5])}),
                    st.fixed_dictionaries({"prefix": st.just("1")}),
                    st.fixed_dictionaries({"exists": st.booleans()}),
                ),
                min_size=1,
                max_size=2,
            )
        }
    ),
    st.fixed_dictionaries(
        {
            "SS": st.lists(
                st.one_of(st.sampled_from(_WORKPLACES), st.fixed_dictionaries({"exists": st.booleans()})),
                min_size=1,
                max_size=2,
            )
        }
    ),
    st.fixed_dictionaries({"L": st.fixed_dictionaries({"S": st.just(["admin"])})}),
    st.fixed_dictionaries(
        {"M": st.fixed_dictionaries({"City": st.fixed_dictionaries({"S": st.just([{"exists": False}])})})}
    ),
    st.fixed_dictionaries({"BOOL": st.just([True])}),
    st.fixed_dictionaries({"NULL": st.just([{"exists": True}])}),
)
_image_pattern = st.dictionaries(
    st.sampled_from(("Email", "Status", "Version", "WorkplaceIds", "Roles", "Address", "Deleted", "_cdc_tombstone")),
    _image_rule,
    min_size=1,
    max_size=2,
)
_record_pattern = st.fixed_dictionaries(
    {},
    optional={
        "eventName": st.lists(st.sampled_from(("INSERT", "MODIFY", "REMOVE")), min_size=1, max_size=2),
        "tableName": st.lists(st.sampled_from(_TABLES), min_size=1, max_size=1),
        "userIdentity": st.sampled_from(({"type": ["Service"]}, {"principalId": [{"exists": False}]}, [None])),
        "dynamodb": st.fixed_dictionaries({}, optional={"NewImage": _image_pattern, "OldImage": _image_pattern}).filter(
            bool
        ),
    },
).filter(bool)

#: patterns over change records: images, keys, event names, TTL removals; sometimes a $or
change_record_patterns = st.one_of(
    _record_pattern, _with_or(_record_pattern), _record_pattern.map(lambda p: {"data": p})
)
