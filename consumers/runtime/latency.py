"""Change-to-apply latency, as each record processor measures it.

A change's latency is the time from its ``ApproximateCreationDateTime`` (the change's time, as
the destination stamped it: AWS at ms or µs, the local relay when it read the change, LocalStack
when it handled the write) to the end of the batch that applied it, on the processor's clock.
Its precision is the stamp's (whole seconds on an unpatched LocalStack: up to 1 s more).

``LatencyWindow`` keeps the latencies of the last minute (the newest ``limit``); the worker
saves them in its stats file, where `cdc status` merges an app's processors into p50 / p99.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Sequence

__all__ = ["LatencyWindow", "quantile", "sample"]


class LatencyWindow:
    """The latencies (ms) of the changes applied in the last ``window_s`` seconds, at most
    ``limit`` of them (the newest)."""

    def __init__(self, window_s: float = 60.0, limit: int = 300) -> None:
        self.window_s = window_s
        self._entries: deque[tuple[float, int]] = deque(maxlen=limit)

    def add(self, at: float, latencies_ms: Iterable[int]) -> None:
        """Changes applied at ``at`` (epoch s) with these latencies."""
        self._entries.extend((at, ms) for ms in latencies_ms)

    def recent(self, now: float) -> list[int]:
        """The latencies applied within the window before ``now``, oldest first."""
        entries = self._entries
        while entries and entries[0][0] < now - self.window_s:
            entries.popleft()
        return [ms for _, ms in entries]


def quantile(values: Sequence[int], q: float) -> int | None:
    """The nearest-rank ``q`` quantile (0 < q <= 1) of ``values``; None when there are none."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def sample(values: Sequence[int], limit: int) -> list[int]:
    """At most ``limit`` of ``values``, spread evenly over them once sorted (an EMF metric takes
    at most 100 values per document; CloudWatch computes percentiles from them)."""
    if len(values) <= limit:
        return list(values)
    ordered = sorted(values)
    step = (len(ordered) - 1) / (limit - 1)
    return [ordered[round(i * step)] for i in range(limit)]
