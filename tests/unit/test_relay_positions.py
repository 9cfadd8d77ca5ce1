"""The relay's positions: moved past a record only once kinesis-mock saved it (the snapshot
watch, the held batches), and gaps it cannot recover reported, not hidden."""

from __future__ import annotations

import os
import threading

from infra import stack as local_stack
from infra.config import StackConfig
from infra.relay import HeldBatches, Relay, Written
from infra.snapshots import SnapshotWatch
from producer_config import load_pipeline


def _written(acked_ns: int, seq: str = "1", last=("k0", "100", b"x")) -> Written:
    return Written(acked_ns=acked_ns, shard_id="s1", seq=seq, done=False, last=last)


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


def test_nothing_is_due_while_no_save_is_known():
    held = HeldBatches()
    held.add(_written(1))
    assert held.due(None) == ([], None)
    assert held.due(1) == ([], None)  # acknowledged at the very moment: not before


def test_due_batches_come_oldest_first_and_the_newest_record_among_them_is_read_back():
    held = HeldBatches()
    first, second, third = (_written(10, "1", ("k0", "1", b"a")), _written(20, "2", ("k1", "2", b"b")),
                            _written(40, "3", ("k0", "3", b"c")))
    for written in (first, second, third):
        held.add(written)
    assert held.due(30) == ([first, second], ("k1", "2", b"b"))
    held.release(2)
    assert len(held) == 1 and held.due(30) == ([], None)
    assert held.due(41) == ([third], ("k0", "3", b"c"))


def test_a_batch_without_records_is_due_with_the_others_and_needs_no_read_back_alone():
    held = HeldBatches()
    with_records, shard_end = _written(10), Written(11, "s1", "1", True, None)
    held.add(with_records)
    held.add(shard_end)
    assert held.due(20) == ([with_records, shard_end], with_records.last)
    held.release(2)
    empty_end = Written(31, "s2", None, True, None)
    held.add(empty_end)
    assert held.due(40) == ([empty_end], None)


def test_changes_trimmed_before_they_were_relayed_are_recorded_and_reported_by_status(tmp_path, capsys):
    """The relay cannot recover trimmed changes; it must not hide them (no server needed)."""
    pipeline = load_pipeline()
    stack = StackConfig.from_env({"CDC_STATE_DIR": str(tmp_path)})
    relay = Relay(pipeline.table("Users"), pipeline, stack, threading.Event())
    relay.shards = {"shard-1": {"seq": "000042", "done": False}}
    relay._trimmed("shard-1")
    assert relay.shards["shard-1"] == {"seq": None, "done": False}  # reading goes on at TRIM_HORIZON
    capsys.readouterr()
    local_stack.status(stack)
    report = capsys.readouterr().out
    assert "DATA LOST" in report and "table Users, stream shard shard-1: changes after 000042" in report
