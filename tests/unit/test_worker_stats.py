"""The worker stats files (`consumers.runtime.stats`): what the worker writes is what `cdc status`
and `cdc replay` read, in the format files already on disk have; per shard the newest file wins;
a file that does not parse is skipped."""

from __future__ import annotations

import json
from pathlib import Path

from consumers.runtime.batch import BatchStats
from consumers.runtime.stats import WorkerStats, latest_per_shard, read_stats, stats_dir, write_stats
from consumers.runtime.worker import KclRecordProcessor

COUNTS = {"received": 10, "filtered_out": 1, "applied": 8, "stale": 1, "skipped": 0, "dead_lettered": 0, "retries": 2}


def _stats(shard: str = "shardId-000000000001", at: float = 100.0, **fields) -> WorkerStats:
    return WorkerStats(**{"app": "app-x", "shard": shard, "counts": COUNTS, "at": at, "started": 50.0, **fields})


def test_the_layout_is_apps_package_stats_under_the_state_folder(tmp_path):
    assert stats_dir(tmp_path, "app_x") == tmp_path / "apps" / "app_x" / "stats"


def test_what_is_written_reads_back_the_same(tmp_path):
    written = _stats(behind_ms=250)
    path = write_stats(tmp_path, written, pid=42)
    assert path == tmp_path / "shardId-000000000001-42.json"
    assert read_stats(tmp_path) == [written]
    assert list(tmp_path.iterdir()) == [path]  # the file it wrote beside it was renamed over it


def test_the_file_format_is_the_one_on_disk(tmp_path):
    write_stats(tmp_path, _stats(behind_ms=None), pid=7)
    assert json.loads((tmp_path / "shardId-000000000001-7.json").read_text()) == {
        "app": "app-x",
        "shard": "shardId-000000000001",
        **COUNTS,
        "now": {"at": 100.0, "behind_ms": None, "started": 50.0, "position": None, "latency_ms": []},
    }


def test_a_file_an_earlier_worker_wrote_reads(tmp_path):
    (tmp_path / "shardId-000000000002-9.json").write_text(
        '{"app": "a", "shard": "shardId-000000000002", "received": 3, "applied": 3,'
        ' "now": {"at": 1764842400.123, "behind_ms": 0, "started": 1764842100.5}}'
    )
    [stats] = read_stats(tmp_path)
    assert (stats.app, stats.shard, stats.at, stats.behind_ms, stats.started) == (
        "a",
        "shardId-000000000002",
        1764842400.123,
        0,
        1764842100.5,
    )
    assert stats.count("received") == 3 and stats.count("dead_lettered") == 0
    assert stats.position is None  # written before the processors kept their position


def test_per_shard_the_file_written_last_wins(tmp_path):
    write_stats(tmp_path, _stats("s-1", at=100.0, counts={"received": 1}), pid=1)
    write_stats(tmp_path, _stats("s-1", at=300.0, counts={"received": 3}), pid=2)  # a restarted processor
    write_stats(tmp_path, _stats("s-1", at=200.0, counts={"received": 2}), pid=3)
    write_stats(tmp_path, _stats("s-2", at=50.0, counts={"received": 5}), pid=1)
    latest = latest_per_shard(tmp_path)
    assert {shard: stats.count("received") for shard, stats in latest.items()} == {"s-1": 3, "s-2": 5}


def test_a_torn_or_foreign_file_is_skipped(tmp_path):
    write_stats(tmp_path, _stats("s-1"), pid=1)
    (tmp_path / "s-1-2.json").write_text('{"app": "app-x", "shard": "s-1", "received": 4, "now": {"at": 9')
    (tmp_path / "s-1-3.json").write_text('{"app": "app-x", "shard": "s-1", "received": 4}')  # no "now"
    (tmp_path / "s-1-4.json").write_text("[1, 2]")
    (tmp_path / "s-1-5.json").write_bytes(b"\xff\xfe")
    (tmp_path / "s-1-6.tmp").write_text("{}")  # a write not yet renamed
    assert [stats.shard for stats in read_stats(tmp_path)] == ["s-1"]
    assert latest_per_shard(tmp_path)["s-1"].at == 100.0


def test_a_missing_folder_holds_no_stats(tmp_path):
    assert read_stats(tmp_path / "none") == []
    assert latest_per_shard(tmp_path / "none") == {}


def test_the_worker_writes_its_running_totals_and_lag(tmp_path: Path):
    processor = KclRecordProcessor("app-x", lambda shard_id: None, durability=None, stats_dir=tmp_path)
    processor.shard_id, processor.behind_ms = "shardId-000000000003", 1500
    processor.total += BatchStats(received=4, applied=3, stale=1)
    processor._save_stats()
    stats = latest_per_shard(tmp_path)["shardId-000000000003"]
    assert (stats.app, stats.behind_ms, stats.count("received"), stats.count("applied"), stats.count("stale")) == (
        "app-x",
        1500,
        4,
        3,
        1,
    )
    assert set(stats.counts) == set(BatchStats.__slots__)
    assert stats.started <= stats.at
