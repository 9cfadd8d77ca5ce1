"""Write planning, WriteCounts, the guard, and convergence under duplicates and reordering."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consumers.shared.errors import InvalidPlan
from consumers.shared.planning import (
    APPLIED,
    SKIPPED,
    STALE,
    Delete,
    Outcome,
    Skip,
    Upsert,
    WriteCounts,
    WriteResult,
    delete,
    mirror,
    plan_writes,
    should_apply,
    skip,
    upsert,
)
from consumers.shared.records import ChangeRecord, decode_image
from consumers.sinks.memory import InMemorySink, key_of
from tests.records import payload as envelope_payload


def record_from(raw: dict, sequence_number: str = "1") -> ChangeRecord:
    return ChangeRecord.from_kinesis(orjson.dumps(raw), sequence_number=sequence_number, partition_key="pk")


def test_helpers_take_the_record_version(reference_record):
    record = record_from(reference_record)
    assert upsert(record, {"k": 1}, {"d": 2}) == Upsert({"k": 1}, {"d": 2}, record.version)
    assert delete(record, {"k": 1}) == Delete({"k": 1}, record.version)
    assert skip("not interesting") == Skip("not interesting")


def test_plan_writes_fans_out(reference_record):
    record = record_from(reference_record)

    def per_workplace(r):
        for workplace in sorted(r.new_image["WorkplaceIds"]):
            yield upsert(r, {"UserId": r.keys["UserId"], "WorkplaceId": workplace}, {"Email": r.new_image["Email"]})

    planned = plan_writes(record, per_workplace)
    workplaces = sorted(decode_image(reference_record["dynamodb"]["NewImage"])["WorkplaceIds"])
    assert [w.key["WorkplaceId"] for w in planned] == workplaces
    assert all(type(w) is Upsert and w.version == record.version for w in planned)


@pytest.mark.parametrize(
    ("result", "message"),
    [
        (None, "returned None"),
        (["not a write"], "expected Upsert, Delete or Skip"),
        ([Upsert({}, {}, 1)], "key must be a non-empty mapping"),
        ([Upsert({"k": 1}, {}, -1)], "non-negative int"),
        ([Upsert({"k": 1}, {}, True)], "non-negative int"),
        ([Delete({"k": 1}, 1.5)], "non-negative int"),
        ([Upsert({"k": 1}, ["x"], 1)], "document must be a mapping"),
        ([Skip(3)], "reason must be a str"),
    ],
)
def test_plan_writes_rejects_bad_transforms(reference_record, result, message):
    with pytest.raises(InvalidPlan, match=message):
        plan_writes(record_from(reference_record), lambda record: result)


def test_mirror(reference_record):
    record = record_from(reference_record)
    (write,) = mirror(record)
    assert write == Upsert(record.keys, decode_image(reference_record["dynamodb"]["NewImage"]), record.version)
    removal = {**reference_record, "eventName": "REMOVE"}
    removal["dynamodb"] = {k: v for k, v in reference_record["dynamodb"].items() if k != "NewImage"}
    (write,) = mirror(record_from(removal))
    assert write == Delete(record.keys, int(reference_record["dynamodb"]["OldImage"]["Version"]["N"]))


def test_write_counts_count_the_settled_answers():
    answers = [APPLIED, STALE, APPLIED, SKIPPED, WriteResult.rejected("bad"), WriteResult.retry("busy")]
    assert WriteCounts.of(answers) == WriteCounts(applied=2, stale=1, skipped=1)


@pytest.mark.parametrize(
    ("write", "stored", "expected"),
    [
        (Upsert({"k": 1}, {}, 5), None, True),
        (Upsert({"k": 1}, {}, 5), 4, True),
        (Upsert({"k": 1}, {}, 5), 5, False),
        (Upsert({"k": 1}, {}, 5), 6, False),
        (Delete({"k": 1}, 5), None, True),
        (Delete({"k": 1}, 5), 4, True),
        (Delete({"k": 1}, 5), 5, True),  # deletes win ties: REMOVE carries the removed version
        (Delete({"k": 1}, 5), 6, False),
    ],
)
def test_guard(write, stored, expected):
    assert should_apply(write, stored) is expected


def test_in_memory_sink_keeps_tombstones():
    sink = InMemorySink()
    assert sink.apply(Upsert({"k": "a"}, {"x": 1}, 2)).outcome is Outcome.APPLIED
    assert sink.apply(Delete({"k": "a"}, 2)).outcome is Outcome.APPLIED
    assert sink.apply(Upsert({"k": "a"}, {"x": 0}, 1)).outcome is Outcome.STALE
    assert sink.apply(Upsert({"k": "a"}, {"x": 1}, 2)).outcome is Outcome.STALE
    assert sink.get({"k": "a"}).is_tombstone and sink.documents() == {}
    assert sink.apply(Skip("nothing")).outcome is Outcome.SKIPPED
    assert sink.apply(Upsert({"k": "a"}, {"x": 3}, 3)).outcome is Outcome.APPLIED
    assert sink.documents() == {key_of({"k": "a"}): {"x": 3, "k": "a"}}


# --- convergence: duplicated and reordered histories -------------------------------------------

# One item history: a list of operations, each ("put", {attributes}) or ("del",).
_attributes = st.fixed_dictionaries(
    {
        "Name": st.sampled_from(["ann", "bob", "cy"]),
        "WorkplaceIds": st.sets(st.sampled_from(["w1", "w2", "w3"]), min_size=1, max_size=3),
    }
)
_operation = st.one_of(_attributes.map(lambda a: ("put", a)), st.just(("del",)))
_histories = st.dictionaries(
    st.sampled_from(["u1", "u2", "u3"]), st.lists(_operation, min_size=1, max_size=6), min_size=1, max_size=3
)


def _image(user: str, attributes: dict, version: int) -> dict:
    return {
        "UserId": {"S": user},
        "Name": {"S": attributes["Name"]},
        "WorkplaceIds": {"SS": sorted(attributes["WorkplaceIds"])},
        "Version": {"N": str(version)},
    }


def _changes(histories: dict) -> tuple[list[bytes], dict]:
    """Payloads in source order, and each user's final (version, attributes or None)."""
    payloads: list[bytes] = []
    final: dict = {}
    clock = 1_795_731_005_000_000
    for user, operations in histories.items():
        version, current = 0, None
        for operation in operations:
            clock += 1
            new_image = old_image = None
            if operation[0] == "put":
                version += 1
                new_image = _image(user, operation[1], version)
                if current is not None:
                    old_image = _image(user, current, version - 1)
                event = "MODIFY" if current is not None else "INSERT"
                current = operation[1]
            elif current is not None:
                old_image = _image(user, current, version)
                event, current = "REMOVE", None
            else:
                continue  # deleting an absent item produces no change record
            keys = {"UserId": {"S": user}}
            payloads.append(
                envelope_payload(event, "Users", keys, new_image=new_image, old_image=old_image, created_at=clock)
            )
        final[user] = (version, current)
    return payloads, final


def _memberships(record: ChangeRecord):
    """Fan-out: one item per (user, workplace); deletes for memberships that went away."""
    user = record.keys["UserId"]
    old = set(record.old_image["WorkplaceIds"]) if record.old_image is not None else set()
    new = set() if record.is_removal else set(record.new_image["WorkplaceIds"])
    for workplace in sorted(new):
        yield upsert(record, {"UserId": user, "WorkplaceId": workplace}, {"Name": record.new_image["Name"]})
    for workplace in sorted(old - new):
        yield delete(record, {"UserId": user, "WorkplaceId": workplace})


def _deliver(payloads, duplicates, order):
    stream = list(payloads) + [payloads[i % len(payloads)] for i in duplicates]
    return [stream[i] for i in order(len(stream))]


def _apply_checking_monotonic(deliveries, transform) -> InMemorySink:
    sink = InMemorySink()
    seen: dict = {}
    for index, payload in enumerate(deliveries):
        record = ChangeRecord.from_kinesis(payload, sequence_number=str(index), partition_key="pk")
        sink.write(plan_writes(record, transform))
        for key, stored in sink.items().items():
            assert stored.version >= seen.get(key, -1), "a stored version went back"
            seen[key] = stored.version
    return sink


def _orders():
    return st.integers(min_value=0, max_value=2**32).map(
        lambda seed: lambda n: __import__("random").Random(seed).sample(range(n), n)
    )


@settings(max_examples=120, deadline=None)
@given(_histories, st.lists(st.integers(min_value=0, max_value=50), max_size=8), _orders())
def test_mirror_converges_under_duplicates_and_reordering(histories, duplicates, order):
    payloads, final = _changes(histories)
    if not payloads:
        return
    sink = _apply_checking_monotonic(_deliver(payloads, duplicates, order), mirror)
    for user, (version, attributes) in final.items():
        stored = sink.get({"UserId": user})
        if version == 0:
            assert stored is None
            continue
        assert stored.version == version
        if attributes is None:
            assert stored.is_tombstone
        else:
            assert stored.document == decode_image(_image(user, attributes, version))


@settings(max_examples=120, deadline=None)
@given(_histories, st.lists(st.integers(min_value=0, max_value=50), max_size=8), _orders())
def test_fan_out_converges_under_duplicates_and_reordering(histories, duplicates, order):
    payloads, final = _changes(histories)
    if not payloads:
        return
    sink = _apply_checking_monotonic(_deliver(payloads, duplicates, order), _memberships)
    expected = {
        key_of({"UserId": user, "WorkplaceId": workplace}): {
            "UserId": user,
            "WorkplaceId": workplace,
            "Name": attributes["Name"],
        }
        for user, (_version, attributes) in final.items()
        if attributes is not None
        for workplace in attributes["WorkplaceIds"]
    }
    assert sink.documents() == expected


def test_in_order_delivery_equals_reordered_delivery_for_a_known_case():
    payloads, _ = _changes(
        {
            "u1": [
                ("put", {"Name": "ann", "WorkplaceIds": {"w1"}}),
                ("del",),
                ("put", {"Name": "bob", "WorkplaceIds": {"w2"}}),
            ]
        }
    )
    forward = _apply_checking_monotonic(payloads, mirror)
    backward = _apply_checking_monotonic(list(reversed(payloads)) * 2, mirror)
    assert forward.items() == backward.items()
