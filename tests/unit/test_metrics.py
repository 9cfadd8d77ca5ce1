"""consumers.runtime.metrics: the EMF document of a batch, checked against the EMF specification
(the `_aws` metadata object, one metric directive, every declared metric and dimension a
top-level member of the document)."""

from __future__ import annotations

import io
import json

from consumers.runtime import metrics
from consumers.runtime.batch import BatchStats

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
            assert isinstance(doc[metric["Name"]], int | float), f"metric {metric['Name']} needs a top-level number"


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


class _Core:
    def process(self, records):
        return BatchStats(received=len(records), applied=len(records))


class _NeverSaved:
    stream_name = "s"

    def saved_before(self):
        return None


def _process_one_batch(monkeypatch, env: dict[str, str]) -> str:
    from datetime import UTC, datetime

    from consumers.runtime.batch import InputRecord
    from consumers.runtime.worker import KclRecordProcessor

    for name in ("CDC_METRICS", "CDC_METRICS_PATH"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(metrics, "_out", [])
    err = io.StringIO()
    monkeypatch.setattr("sys.stderr", err)
    processor = KclRecordProcessor("app-x", lambda shard: _Core(), _NeverSaved())  # type: ignore[arg-type]
    processor.shard_id, processor.core = "shardId-1", _Core()  # type: ignore[assignment]
    processor._process([InputRecord(b"{}", "1", 0, "pk", datetime.now(UTC))], 250)
    return err.getvalue()


def test_the_worker_emits_one_document_per_batch_when_enabled(monkeypatch):
    lines = [json.loads(line) for line in _process_one_batch(monkeypatch, {"CDC_METRICS": "emf"}).splitlines()]
    [doc] = [line for line in lines if "_aws" in line]
    _check_emf(doc)
    assert (doc["App"], doc["Shard"], doc["Applied"], doc["MillisBehindLatest"]) == ("app-x", "shardId-1", 1, 250)


def test_the_worker_emits_nothing_by_default(monkeypatch):
    assert "_aws" not in _process_one_batch(monkeypatch, {})
