"""services.kinesis.StreamHistory on a real kinesis-mock: what `verify` reads again and again.
Read incrementally, it is always what a whole read of the stream gives, also after the emulator
lost the records it had not saved and was written to again."""

from __future__ import annotations

import pytest

from services.kinesis import StreamHistory, read_stream
from tests.integration.test_kinesis_mock_patch import STREAM, PrivateKinesis, _active

pytestmark = pytest.mark.stack


def _put(kinesis, tag: str, count: int) -> None:
    records = [{"Data": f"{tag}-{i}".encode(), "PartitionKey": f"k{i % 7}"} for i in range(count)]
    assert kinesis.put_records(StreamName=STREAM, Records=records)["FailedRecordCount"] == 0


def _data(records) -> list[tuple[str, bytes]]:
    return [(r.shard_id, r.data) for r in records]


def test_a_history_read_again_is_the_whole_stream_also_after_the_emulator_lost_its_tail(tmp_path, pipeline):
    mock = PrivateKinesis(tmp_path / "k", pipeline, "main.js", persist_interval="10s").start()
    try:
        kinesis = mock.kinesis
        kinesis.create_stream(StreamName=STREAM, ShardCount=2)
        _active(kinesis)
        history = StreamHistory(kinesis, STREAM)
        # GIVEN a history read once, then more records: read again, it has them all, in order
        _put(kinesis, "a", 120)
        assert history.records() == list(read_stream(kinesis, STREAM))
        _put(kinesis, "b", 80)
        assert history.records() == list(read_stream(kinesis, STREAM))
        assert {data for _, data in _data(history.records())} >= {b"a-0", b"b-79"}

        # WHEN kinesis-mock saves (every 10 s), gets more records, and is killed before its next
        # save: it comes back without them and is written to again
        mock.wait_saved()
        _put(kinesis, "lost", 50)
        assert len(history.records()) == 250
        mock.kill()
        mock.start()
        _put(kinesis, "c", 30)

        # THEN the history is what the stream holds now: no lost record, every new one
        now = list(read_stream(kinesis, STREAM))
        assert not any(data.startswith(b"lost") for _, data in _data(now)), "kinesis-mock kept its tail"
        assert history.records() == now and len(now) == 230
    finally:
        mock.kill()
