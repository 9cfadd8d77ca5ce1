"""Sink adapters: apply planned writes to DynamoDB or OpenSearch under the version guard.

Every sink has ``write(writes) -> WriteCounts`` and raises ``RetryableSinkError`` (back off and
retry the batch), ``SinkRejectedWrite`` (dead-letter the writes it carries) or ``SinkError``
(stop: configuration, permissions). ``Disposition`` is how each adapter classifies one result.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import Enum
from typing import Protocol

from consumers.shared.planning import PlannedWrite, WriteCounts

__all__ = ["Disposition", "Sink"]


class Disposition(Enum):
    """How a sink's answer to one write is handled."""

    APPLIED = "applied"  # written
    STALE = "stale"  # the guard refused it: the sink holds this version or newer
    RETRY = "retry"  # transient: throttling, 5xx, connection, timeout
    REJECT = "reject"  # the write itself is invalid for the sink: dead-letter it
    FAIL = "fail"  # neither: configuration, permissions, unknown


class Sink(Protocol):
    def write(self, writes: Sequence[PlannedWrite]) -> WriteCounts: ...
