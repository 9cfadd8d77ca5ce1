"""The processors' counters as CloudWatch Embedded Metric Format (EMF) documents.

One JSON document per processed batch: the ``_aws`` metadata (``Timestamp`` in ms,
``CloudWatchMetrics`` = one directive with the namespace, the dimension sets and each metric's
name and unit) and every value at the top level, where CloudWatch Logs reads them when it
extracts the metrics from the log event. The shard is a property, not a dimension: each
dimension combination is a custom metric of its own (billed monthly), and shards come and go
with each reshard; the logs still carry it for Logs Insights.

Off unless ``CDC_METRICS=emf`` (the ECS task definition sets it, `infra/deploy/aws/template.py`), so the
local stack's logs keep one line per batch. ``CDC_METRICS_PATH`` sends the documents to a file
instead of stderr: the MultiLangDaemon copies a processor's stderr into its own log with a
prefix, and CloudWatch extracts metrics only from log events that are a JSON object as a whole,
so the task definition points it at the container's stdout (``/proc/1/fd/1``, the awslogs
driver's pipe) where each document is its own log event.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from typing import IO, Any

__all__ = ["MAX_VALUES", "METRICS", "NAMESPACE", "emf_document", "emit", "enabled"]

NAMESPACE = "KinesisCdc"
DIMENSIONS = (("App",),)

#: EMF metric name -> (unit, the BatchStats field or the batch line's key it comes from)
METRICS: Mapping[str, tuple[str, str]] = {
    "Received": ("Count", "received"),
    "Applied": ("Count", "applied"),
    "Stale": ("Count", "stale"),
    "Filtered": ("Count", "filtered_out"),
    "Skipped": ("Count", "skipped"),
    "DeadLettered": ("Count", "dead_lettered"),
    "Retries": ("Count", "retries"),
    "BatchDuration": ("Milliseconds", "ms"),
    "MillisBehindLatest": ("Milliseconds", "behind_ms"),
    # a list of the batch's values (at most MAX_VALUES): CloudWatch's p50 / p99 statistics
    "ChangeToApplyLatency": ("Milliseconds", "latency_ms"),
}
#: EMF takes at most 100 values for one metric in one document
MAX_VALUES = 100


def emf_document(
    app: str, shard: str, values: Mapping[str, float | int | None], *, timestamp_ms: int, namespace: str = NAMESPACE
) -> dict[str, Any]:
    """The EMF document of one batch. ``values``: the batch line's fields (the BatchStats
    counts, ``ms``, ``behind_ms``) and ``latency_ms``, a list; a metric whose value is missing or None is left out (EMF
    requires a number for every metric it declares)."""
    present = {name: (unit, values[key]) for name, (unit, key) in METRICS.items() if values.get(key) is not None}
    return {
        "_aws": {
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [
                {
                    "Namespace": namespace,
                    "Dimensions": [list(dimension_set) for dimension_set in DIMENSIONS],
                    "Metrics": [{"Name": name, "Unit": unit} for name, (unit, _) in present.items()],
                }
            ],
        },
        "App": app,
        "Shard": shard,
        **{name: value for name, (_, value) in present.items()},
    }


def enabled(env: Mapping[str, str] = os.environ) -> bool:
    return env.get("CDC_METRICS", "").lower() == "emf"


_out: list[IO[str]] = []


def emit(document: Mapping[str, Any], env: Mapping[str, str] = os.environ) -> None:
    """Writes one document as one line: to ``CDC_METRICS_PATH`` when set (opened once), else stderr."""
    if not _out:
        path = env.get("CDC_METRICS_PATH")
        _out.append(open(path, "a", buffering=1) if path else sys.stderr)  # kept open for the process
    _out[0].write(json.dumps(document, separators=(",", ":")) + "\n")
    _out[0].flush()
