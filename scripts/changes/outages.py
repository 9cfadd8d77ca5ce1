"""Riding through outages: a write of the change generator whose endpoint is unreachable,
silent or answering 5xx is tried again with back-off for up to `OUTAGE_S` (5 minutes), and a try
refused by its condition after a lost answer counts as written when the table holds the change
(the generator never writes a change twice).

Both writers go through it: one change at a time and a transaction of a batch
(`scripts.changes.writer`, `scripts.changes.transactions`).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)

from base.retry import Backoff

__all__ = ["OUTAGE_BACKOFF", "OUTAGE_ERRORS", "OUTAGE_S", "through_outages"]

#: the endpoint is unreachable or did not answer: the write is tried again, for up to OUTAGE_S
OUTAGE_ERRORS = (EndpointConnectionError, ConnectionClosedError, ConnectTimeoutError, ReadTimeoutError)
OUTAGE_S = 300.0
#: the waits between tries through an outage: 0.2 s, 0.4 s, ... doubling up to 5 s
OUTAGE_BACKOFF = Backoff(first_s=0.2, cap_s=5.0)


def through_outages(
    write: Callable[[], object],
    stored: Callable[[], bool],
    *,
    outage_s: float | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """``write()`` until it returns. An unreachable or silent endpoint (`OUTAGE_ERRORS`) or a 5xx
    is waited out, backing off (`OUTAGE_BACKOFF`), for up to ``outage_s`` (`OUTAGE_S`) from the
    first failed try; then the error is raised. A try that failed that way may still have been
    applied (only its answer was lost), and so may one that botocore retried by itself (a read
    timeout while DynamoDB Local was paused: its retry is refused, the first attempt was
    applied): whenever a try is refused by its condition and ``stored()`` finds the change in
    the table, it was written once, and counts once. (Not `base.retry.retrying`: a refusal is
    looked into, and the outage is timed from the first failure, not the first try.)"""
    deadline: float | None = None
    attempt = 0
    while True:
        try:
            write()
            return
        except (*OUTAGE_ERRORS, ClientError) as exc:
            if isinstance(exc, ClientError) and not _server_error(exc):
                if _refused_by_condition(exc) and stored():
                    return
                raise
            if deadline is None:
                deadline = time.monotonic() + (OUTAGE_S if outage_s is None else outage_s)
            if time.monotonic() > deadline:
                raise
            attempt += 1
            sleep(OUTAGE_BACKOFF.delay(attempt))


def _server_error(exc: ClientError) -> bool:
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return type(status) is int and status >= 500


def _refused_by_condition(exc: ClientError) -> bool:
    error = exc.response.get("Error", {}).get("Code")
    if error == "ConditionalCheckFailedException":
        return True
    reasons = [r.get("Code") for r in exc.response.get("CancellationReasons", [])]
    return error == "TransactionCanceledException" and "ConditionalCheckFailed" in reasons
