"""Sink adapters: apply planned writes under the version guard, one kind per package
(``dynamodb``, ``opensearch``), found through ``consumers.sinks.registry``.

Every sink has ``write(writes) -> list[WriteResult]``: one answer per write, in order (applied,
stale, skipped, rejected with its reason, or to be retried). It raises only when the sink
itself cannot be used (``SinkError``: a missing table or index, access denied, an unknown
error): then no write is at fault and nothing may be checkpointed.

A classifier of a client's answer returns the ``Outcome`` of the write, or ``SINK_FAILED``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final, Protocol

from consumers.shared.planning import Outcome, PlannedWrite, WriteResult

__all__ = ["SINK_FAILED", "Classified", "Sink"]

#: a classifier's answer when the sink itself failed (not the write): raise ``SinkError``
SINK_FAILED: Final = None
Classified = Outcome | None


class Sink(Protocol):
    def write(self, writes: Sequence[PlannedWrite]) -> list[WriteResult]: ...
