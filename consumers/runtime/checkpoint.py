"""When and how one shard's position is checkpointed (the KCL record processor only delegates).

Rules:
  * a position is checkpointed only once every record up to it was applied (or dead-lettered)
    *and* the stream has stored it durably (``services.durability``): a checkpoint at a record
    the stream later forgets would make the KCL take the shard for ended;
  * the newest such position is checkpointed, at most once per call;
  * SHARD_END is checkpointed only when the stream reports the shard closed;
  * checkpoints refused because the lease is gone are dropped (the next owner repeats the
    records); throttled ones, or ones failing because the lease table is unreachable for a
    moment, are retried with back-off; any other refusal is logged and dropped (the next
    batch's checkpoint covers it).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from amazon_kclpy.checkpoint_error import CheckpointError

from base.retry import Backoff, retrying
from services.durability import Durability, DurableGate

__all__ = ["Checkpointer", "Position"]

_ATTEMPTS = 10
#: checkpoint errors worth another attempt: throttled, or the lease table unreachable for a moment
_TRANSIENT_ERRORS = ("ThrottlingException", "KinesisClientLibDependencyException")
#: between tries of a checkpoint the KCL refused for the moment: 0.1, 0.2, 0.4 ... 5 s
_BACKOFF = Backoff(first_s=0.1, cap_s=5.0)


@dataclass(frozen=True, slots=True)
class Position:
    sequence_number: str
    sub_sequence_number: int | None


class Checkpointer:
    """Checkpoints one shard through the KCL's checkpointer objects, gated by ``durability``.

    ``log(event, **fields)`` reports skipped and failed checkpoints."""

    def __init__(
        self, durability: Durability, log: Callable[..., None], *, sleep: Callable[[float], None] = time.sleep
    ) -> None:
        self._gate: DurableGate[Position] = DurableGate(durability)
        self._durability = durability
        self._log = log
        self._sleep = sleep

    @property
    def held(self) -> int:
        """Batches applied but not checkpointed yet (waiting for the stream to store them)."""
        return len(self._gate)

    def applied(self, sequence_number: str, sub_sequence_number: int | None, arrival_time: datetime | None) -> None:
        """Every record up to this one was applied; it arrived at ``arrival_time`` (ms precision)."""
        # the record arrived before the next millisecond began
        arrived_ns = (round(arrival_time.timestamp() * 1000) + 1) * 1_000_000 if arrival_time else time.time_ns()
        self._gate.hold(arrived_ns, Position(sequence_number, sub_sequence_number))

    def checkpoint_stored(self, checkpointer) -> None:
        """Checkpoint the newest applied position the stream has stored, if any."""
        due = self._gate.due()
        if due:
            self._checkpoint(checkpointer, due[-1].sequence_number, due[-1].sub_sequence_number)
            self._gate.release(len(due))

    def checkpoint_shard_end(self, checkpointer, shard_id: str) -> bool:
        """Checkpoint SHARD_END if the stream reports the shard closed; False (no checkpoint)
        when it reports it open: the KCL was told a wrong end (kinesis-mock answers
        ResourceNotFound for records it forgot), and the shard must be read again."""
        if not self._durability.shard_closed(shard_id):
            return False
        self._checkpoint(checkpointer, None, None)
        return True

    def _checkpoint(self, checkpointer, sequence_number: str | None, sub_sequence_number: int | None) -> None:
        try:
            retrying(
                lambda: checkpointer.checkpoint(sequence_number, sub_sequence_number),
                retry_on=lambda exc: isinstance(exc, CheckpointError) and exc.value in _TRANSIENT_ERRORS,
                backoff=_BACKOFF,
                attempts=_ATTEMPTS,
                sleep=self._sleep,
            )
        except CheckpointError as exc:
            if exc.value == "ShutdownException":  # lease lost meanwhile: the next owner repeats
                self._log("checkpoint_skipped", reason=exc.value)
            else:
                self._log("checkpoint_failed", reason=exc.value, sequence_number=sequence_number)
