"""consumers.runtime.metrics: the EMF document of a batch, checked against the EMF specification
(the `_aws` metadata object, one metric directive, every declared metric and dimension a
top-level member of the document)."""

from __future__ import annotations

import io
import json
import logging
import time
from types import SimpleNamespace

from consumers.runtime import metrics
from consumers.runtime.batch import BatchHooks, BatchStats

BATCH = {"ms": 12.5, "behind_ms": 3000, "received": 10, "filtered_out": 2, "applied": 6, "stale": 1, "skipped": 0}
BATCH |= {"dead_lettered": 1, "retries": 4}


def _check_emf(doc: dict) -> None:
    """The rules of the EMF specification that a CloudWatch Logs extraction relies on."""
    meta = doc["_aws"]
    assert isinstance(meta["Timestamp"], int) and meta["Timestamp"] > 0
    directives = meta["CloudWatchMetrics"]
    assert isinstance(directives, list) and directives
    for directive in directives:
        assert isinstance(directive["Namespace"], str) and 1 <= len(directive["Namespace"]) <= 255
        assert all(isinstance(ds, list) and len(ds) <= 30 for ds in directive["Dimensions"])
        for dimension_set in directive["Dimensions"]:
            for dimension in dimension_set:
                assert isinstance(doc[dimension], str), f"dimension {dimension} must be a top-level string"
        assert len(directive["Metrics"]) <= 100
        for metric in directive["Metrics"]:
            assert set(metric) <= {"Name", "Unit", "StorageResolution"}
            assert metric["Unit"] in {"Count", "Milliseconds"}
            value = doc[metric["Name"]]
            # the specification: a number, or an array of at most 100 numbers
            values = value if isinstance(value, list) else [value]
            assert 1 <= len(values) <= 100, f"metric {metric['Name']}: 1 to 100 values"
            assert all(isinstance(v, int | float) for v in values), f"metric {metric['Name']} needs numbers"


def test_document_follows_the_emf_specification():
    doc = metrics.emf_document("app-x", "shardId-000000000001", BATCH, timestamp_ms=1_700_000_000_123)
    _check_emf(doc)
    assert doc["_aws"]["Timestamp"] == 1_700_000_000_123
    directive = doc["_aws"]["CloudWatchMetrics"][0]
    assert directive["Namespace"] == metrics.NAMESPACE
    assert directive["Dimensions"] == [["App"]]
    assert doc["App"] == "app-x" and doc["Shard"] == "shardId-000000000001"


def test_every_counter_of_the_batch_line_becomes_a_metric():
    doc = metrics.emf_document("app-x", "s", BATCH, timestamp_ms=1)
    assert {m["Name"]: m["Unit"] for m in doc["_aws"]["CloudWatchMetrics"][0]["Metrics"]} == {
        "Received": "Count",
        "Applied": "Count",
        "Stale": "Count",
        "Filtered": "Count",
        "Skipped": "Count",
        "DeadLettered": "Count",
        "Retries": "Count",
        "BatchDuration": "Milliseconds",
        "MillisBehindLatest": "Milliseconds",
    }
    assert (doc["Applied"], doc["Stale"], doc["Filtered"], doc["DeadLettered"], doc["Retries"]) == (6, 1, 2, 1, 4)
    assert (doc["BatchDuration"], doc["MillisBehindLatest"]) == (12.5, 3000)


def test_the_metrics_cover_every_batch_stats_field():
    """A counter added to BatchStats must be added to METRICS too."""
    assert set(BatchStats.__slots__) <= {key for _, key in metrics.METRICS.values()}


def test_a_missing_value_is_not_declared():
    doc = metrics.emf_document("app-x", "s", {**BATCH, "behind_ms": None}, timestamp_ms=1)
    _check_emf(doc)
    assert "MillisBehindLatest" not in doc
    assert "MillisBehindLatest" not in {m["Name"] for m in doc["_aws"]["CloudWatchMetrics"][0]["Metrics"]}


def test_enabled_only_when_asked():
    assert not metrics.enabled({})
    assert metrics.enabled({"CDC_METRICS": "emf"})


def test_emit_writes_one_json_line_to_the_configured_path(tmp_path, monkeypatch):
    monkeypatch.setattr(metrics, "_out", [])
    path = tmp_path / "emf.log"
    doc = metrics.emf_document("app-x", "s", BATCH, timestamp_ms=1)
    metrics.emit(doc, {"CDC_METRICS_PATH": str(path)})
    metrics.emit(doc, {})  # the destination is chosen once per process
    lines = path.read_text().splitlines()
    assert [json.loads(line) for line in lines] == [doc, doc]
    metrics._out[0].close()


def test_emit_defaults_to_stderr(monkeypatch):
    monkeypatch.setattr(metrics, "_out", [])
    err = io.StringIO()
    monkeypatch.setattr("sys.stderr", err)
    metrics.emit({"a": 1}, {})
    assert err.getvalue() == '{"a":1}\n'


class _Sink:
    def write(self, writes):
        return []

    def close(self):
        pass


class _Core:
    """A batch processor that decodes every record as a change made 400 ms before now."""

    def __init__(self):
        self.sink, self.hooks = _Sink(), BatchHooks()

    def process(self, records):
        for _ in records:
            self.hooks.changed(SimpleNamespace(created_at_us=time.time_ns() // 1000 - 400_000))
        self.sink.write([])
        return BatchStats(received=len(records), applied=len(records))


class _NeverSaved:
    stream_name = "s"

    def saved_before(self):
        return None


def _process_one_batch(monkeypatch, env: dict[str, str]) -> str:
    from consumers.runtime.worker import KclRecordProcessor

    for name in ("CDC_METRICS", "CDC_METRICS_PATH"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(metrics, "_out", [])
    err = io.StringIO()
    monkeypatch.setattr("sys.stderr", err)
    processor = KclRecordProcessor("app-x", lambda shard: _Core(), _NeverSaved())  # type: ignore[arg-type]
    processor.initialize(SimpleNamespace(shard_id="shardId-1", sequence_number=None))
    arrived_ms = time.time_ns() // 1_000_000 - 300
    record = SimpleNamespace(
        binary_data=b"{}", sequence_number="1", sub_sequence_number=0, partition_key="pk", timestamp_millis=arrived_ms
    )
    processor.process_records(SimpleNamespace(records=[record], millis_behind_latest=250, checkpointer=None))
    return err.getvalue()


def test_the_worker_emits_one_document_per_batch_when_enabled(monkeypatch):
    lines = [json.loads(line) for line in _process_one_batch(monkeypatch, {"CDC_METRICS": "emf"}).splitlines()]
    [doc] = [line for line in lines if "_aws" in line]
    _check_emf(doc)
    assert (doc["App"], doc["Shard"], doc["Applied"], doc["MillisBehindLatest"]) == ("app-x", "shardId-1", 1, 250)
    [latency] = doc["ChangeToApplyLatency"]
    assert 400 <= latency < 2_000


def test_the_batch_line_says_where_the_time_went(monkeypatch, caplog):
    """Waiting (arrival -> delivery), processing, of which the sink, the checkpoint, and the
    change-to-apply latency."""
    caplog.set_level(logging.INFO, logger="cdc.worker")
    _process_one_batch(monkeypatch, {})
    [batch] = [line for line in map(json.loads, caplog.messages) if line.get("event") == "batch"]
    assert 300 <= batch["wait_oldest_ms"] == batch["wait_newest_ms"] < 2_000
    assert 0 <= batch["sink_ms"] <= batch["ms"]
    assert batch["checkpoint_ms"] >= 0
    assert 400 <= batch["latency_p50_ms"] == batch["latency_max_ms"] < 2_000


def test_the_worker_emits_nothing_by_default(monkeypatch):
    assert "_aws" not in _process_one_batch(monkeypatch, {})
