"""When is a record Kinesis acknowledged stored for good? The one seam for that question.

Whoever must never move past a record the stream could still lose asks a ``Durability``: the
relay before it saves its position (``infra.relay.pump``), a consumer before it checkpoints
(``consumers.runtime.checkpoint``). Real Kinesis (and LocalStack, whose engine keeps what it
acknowledged while it runs) stores a record when it acknowledges it: ``KinesisDurability``.
The local stack's kinesis-mock keeps records in memory and saves snapshots of them, so a
SIGKILL loses the ones acknowledged since its last save: ``services.kinesis_mock``.

This module holds the protocol (what every implementation guarantees) and ``DurableGate``,
the one place that applies it to positions waiting to be saved.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Generic, Protocol, TypeVar

from services.kinesis import list_shards

__all__ = ["Durability", "DurableGate", "KinesisDurability", "durability_for"]

T = TypeVar("T")


class Durability(Protocol):
    """What a Kinesis endpoint guarantees about the records of one stream it acknowledged."""

    stream_name: str

    def saved_before(self) -> float | None:
        """Every record of the stream acknowledged before the returned time (ns since the epoch,
        the ``time.time_ns()`` clock) survives a crash of the endpoint. Never decreases.
        ``None`` while no such time is known: hold everything."""
        ...

    def still_stored(self, shard_id: str, sequence_number: str, data: bytes) -> bool:
        """The record acknowledged at (shard, sequence number) is still there, with ``data``.
        An endpoint that loses records loses every record acknowledged after a point in time,
        so one record still stored proves every record acknowledged before it."""
        ...

    def shard_closed(self, shard_id: str) -> bool:
        """The stream reports the shard closed (it has an ending sequence number) or gone.
        Asked before a SHARD_END checkpoint, after which the shard is never read again."""
        ...


class KinesisDurability:
    """Amazon Kinesis Data Streams (and LocalStack): acknowledged means stored."""

    def __init__(self, kinesis, stream_name: str) -> None:
        self._kinesis = kinesis
        self.stream_name = stream_name

    def saved_before(self) -> float | None:
        return math.inf

    def still_stored(self, shard_id: str, sequence_number: str, data: bytes) -> bool:
        return True

    def shard_closed(self, shard_id: str) -> bool:
        shards = list_shards(self._kinesis, self.stream_name)
        shard = next((s for s in shards if s["ShardId"] == shard_id), None)
        return shard is None or "EndingSequenceNumber" in shard["SequenceNumberRange"]


class DurableGate(Generic[T]):
    """Positions acknowledged by the stream, held (oldest first) until it has stored them.

    ``hold(acked_before_ns, position)`` after each write or each processed batch, where every
    record up to ``position`` was acknowledged strictly before ``acked_before_ns``; ``due()``
    gives the positions whose records are stored now (they stay held until ``release``), so the
    caller saves or checkpoints the newest of them and then releases them.
    """

    def __init__(self, durability: Durability) -> None:
        self.durability = durability
        self._held: deque[tuple[int, T]] = deque()

    def __len__(self) -> int:
        return len(self._held)

    def hold(self, acked_before_ns: int, position: T) -> None:
        self._held.append((acked_before_ns, position))

    def due(self) -> list[T]:
        if not self._held:
            return []
        saved_before = self.durability.saved_before()
        if saved_before is None:
            return []
        due = []
        for acked_before_ns, position in self._held:
            if acked_before_ns > saved_before:
                break
            due.append(position)
        return due

    def release(self, count: int) -> None:
        for _ in range(count):
            self._held.popleft()


def durability_for(stack, kinesis, stream_name: str) -> Durability:
    """The durability of ``stream_name`` on the stack's target (``kinesis``: a boto3 client)."""
    from services.config import Target
    from services.kinesis_mock import KinesisMockDurability

    # LocalStack's engine is kinesis-mock too; when this project runs it (host mode) its
    # snapshot is visible, so the same gate applies. A LocalStack run elsewhere is trusted.
    if stack.target is Target.LOCAL or (stack.target is Target.LOCALSTACK and stack.localstack_root.is_dir()):
        return KinesisMockDurability(kinesis, stream_name, stack.kinesis_snapshot)
    return KinesisDurability(kinesis, stream_name)
