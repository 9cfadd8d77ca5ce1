"""The project's one retry policy: exponential back-off, optionally jittered, and a loop that
retries a call on the errors a caller names.

Which layer retries what (each layer retries only what it owns; nothing retries twice what
another layer already retries):

    botocore          one AWS request: throttling, 5xx, connection errors (``services.clients``:
                      standard mode, 5 attempts)
    sink writes       a batch whose sink answered "try again" (``consumers.runtime.batch``:
                      app.toml ``[retry]``, then the processor exits and the KCL re-delivers)
    checkpoints       a checkpoint the KCL refused for the moment (``consumers.runtime.checkpoint``)
    dead letters      putting a letter (``consumers.runtime.deadletter``)
    processes         a JVM, relay loop or stack component that died (``daemon``, ``relay``,
                      ``supervisor``): restarted after a back-off that starts over once it ran
    the generator     a write refused by a conflict, throttling or an outage
                      (``scripts.changes``)
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")

__all__ = ["Backoff", "retrying"]


@dataclass(frozen=True)
class Backoff:
    """Attempt ``n`` (1, 2, ...) waits ``min(cap_s, first_s * factor ** (n - 1))`` seconds, then
    scaled by a random factor in ``[1 - jitter, 1]`` (``jitter=1``: full jitter, spreads
    retries of many workers apart). Attempt 0 waits nothing."""

    first_s: float
    cap_s: float
    factor: float = 2.0
    jitter: float = 0.0

    def __post_init__(self) -> None:
        if not (0 <= self.first_s <= self.cap_s and self.factor >= 1 and 0 <= self.jitter <= 1):
            raise ValueError(f"invalid back-off {self!r}: need 0 <= first_s <= cap_s, factor >= 1, 0 <= jitter <= 1")

    def ceiling(self, attempt: int) -> float:
        """The delay of ``attempt`` before jitter."""
        if attempt <= 0:
            return 0.0
        # the exponent is bounded so that a long-running loop never overflows a float
        return float(min(self.cap_s, self.first_s * self.factor ** min(attempt - 1, 64)))

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        ceiling = self.ceiling(attempt)
        if not self.jitter or not ceiling:
            return ceiling
        return ceiling * (1 - self.jitter * (rng or random).random())


def retrying(
    call: Callable[[], T],
    *,
    retry_on: Callable[[BaseException], bool],
    backoff: Backoff,
    attempts: int | None = None,
    deadline_s: float | None = None,
    on_retry: Callable[[int, BaseException, float], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    rng: random.Random | None = None,
) -> T:
    """``call()``, tried again after a back-off while it raises an error ``retry_on`` accepts.

    Gives up (re-raises the last error) after ``attempts`` tries in all, or when the next wait
    would end past ``deadline_s`` seconds from the first try; an error ``retry_on`` refuses is
    raised at once. ``on_retry(attempt, error, delay)`` is told before each wait (for logs)."""
    if attempts is not None and attempts < 1:
        raise ValueError(f"attempts must be at least 1, not {attempts}")
    started = clock()
    attempt = 0
    while True:
        attempt += 1
        try:
            return call()
        except Exception as error:
            if not retry_on(error) or (attempts is not None and attempt >= attempts):
                raise
            delay = backoff.delay(attempt, rng)
            if deadline_s is not None and clock() + delay - started > deadline_s:
                raise
            if on_retry is not None:
                on_retry(attempt, error, delay)
            sleep(delay)
