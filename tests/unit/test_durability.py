"""The durability seam: kinesis-mock's snapshot watch, and the gate that holds positions until
the stream has stored them (used by the relay and by the consumers' checkpoints)."""

from __future__ import annotations

import math
import os

import pytest

from services.durability import DurableGate, KinesisDurability
from services.kinesis_mock import SnapshotWatch


class Stream:
    """A `Durability` whose stored horizon the test sets."""

    stream_name = "s"

    def __init__(self, saved_before=None):
        self.horizon = saved_before

    def saved_before(self):
        return self.horizon


def test_saved_before_is_the_end_of_the_second_to_last_write(tmp_path):
    watch = SnapshotWatch(tmp_path / "kinesis-data.json")
    assert watch.saved_before() is None  # no snapshot yet
    watch.seen(50)
    assert watch.saved_before() is None  # one write: its snapshot may predate anything
    watch.seen(50)  # the same write seen again
    watch.seen(40)  # older: ignored
    assert watch.saved_before() is None
    watch.seen(150)
    assert watch.saved_before() == 50  # the write ending at 150 holds everything acknowledged before 50
    watch.seen(210)
    assert watch.saved_before() == 150


def test_saved_before_reads_the_file_mtime(tmp_path):
    path = tmp_path / "kinesis-data.json"
    watch = SnapshotWatch(path)
    for mtime in (1_000_000_000, 2_000_000_000):
        path.write_text("{}")
        os.utime(path, ns=(mtime, mtime))
        result = watch.saved_before()
    assert result == 1_000_000_000


@pytest.mark.parametrize("horizon, due", [(None, []), (1, []), (2, ["a"])])
def test_a_position_is_due_once_everything_acknowledged_before_its_bound_is_stored(horizon, due):
    gate = DurableGate(Stream(horizon))
    gate.hold(2, "a")  # acknowledged before 2 (ns): maybe at 1, which a horizon of 1 does not cover
    assert gate.due() == due


def test_due_positions_come_oldest_first_and_stay_held_until_released():
    stream = Stream(30)
    gate = DurableGate(stream)
    for acked, position in ((10, "a"), (20, "b"), (40, "c")):  # acknowledged before these
        gate.hold(acked, position)
    assert gate.due() == ["a", "b"]
    assert gate.due() == ["a", "b"] and len(gate) == 3  # asking releases nothing
    gate.release(2)
    assert len(gate) == 1 and gate.due() == []
    stream.horizon = 41
    assert gate.due() == ["c"]


def test_real_kinesis_stores_what_it_acknowledges():
    kinesis = KinesisDurability(kinesis=None, stream_name="s")
    gate = DurableGate(kinesis)
    gate.hold(10**30, "far in the future")
    assert kinesis.saved_before() == math.inf and gate.due() == ["far in the future"]
    assert kinesis.still_stored("shardId-0", "1", b"x")
