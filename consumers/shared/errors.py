"""The pure core's errors: records, filter criteria, plans and sinks. They derive from the
project's one root, :class:`base.errors.CdcError` (re-exported here)."""

from __future__ import annotations

from base.errors import CdcError as CdcError  # re-exported: the root of the hierarchy


class DynamoJsonError(CdcError, ValueError):
    """A value is not valid DynamoDB JSON (decoding) or cannot be expressed in it (encoding).

    ``path`` names the attribute, e.g. ``Address.Lines[2]`` (map keys joined by ``.``, list and
    set positions in brackets); ``reason`` says what is wrong with the value found there.
    """

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{path or '<root>'}: {reason}")


class InvalidChangeRecord(CdcError, ValueError):
    """A Kinesis record's payload is not a valid DynamoDB change record.

    ``field`` is the JSON path of the offending field (``dynamodb.NewImage.Email``),
    ``reason`` what is wrong with it, ``sequence_number`` the Kinesis sequence number when known.
    """

    def __init__(self, field: str, reason: str, *, sequence_number: str | None = None) -> None:
        self.field = field
        self.reason = reason
        self.sequence_number = sequence_number
        where = f" (sequence number {sequence_number})" if sequence_number else ""
        super().__init__(f"invalid change record{where}: {field}: {reason}")


class InvalidFilterPattern(CdcError, ValueError):
    """A filter criteria pattern was rejected at compile time.

    ``filter_index`` is the position in ``Filters`` (None when the criteria object itself is
    wrong), ``path`` the JSON path inside the pattern (``$.dynamodb.Keys.Id.S[0].prefix``).
    """

    def __init__(self, filter_index: int | None, path: str, reason: str) -> None:
        self.filter_index = filter_index
        self.path = path
        self.reason = reason
        where = "FilterCriteria" if filter_index is None else f"Filters[{filter_index}].Pattern"
        super().__init__(f"{where} at {path}: {reason}")


class InvalidPlan(CdcError, TypeError):
    """A transform produced something that is not a valid planned write."""


class SinkError(CdcError):
    """A sink failed in a way that neither a retry nor dead-lettering one write can fix
    (missing table or index, access denied, unknown error). Stop without checkpointing.

    Everything else a sink has to say is an answer per write (``planning.WriteResult``):
    applied, stale, rejected with a reason, or to be retried."""
