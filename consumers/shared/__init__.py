"""Shared, pure core of the CDC consumers: records, filtering, write planning, sinks.

Import from the modules (``consumers.shared.records`` ...); the names below are re-exported
for convenience. Nothing here prints: stdout belongs to the KCL MultiLangDaemon.
"""

from consumers.shared.errors import (
    CdcError,
    DynamoJsonError,
    InvalidChangeRecord,
    InvalidFilterPattern,
    InvalidPlan,
    RetryableSinkError,
    SinkError,
    SinkRejectedWrite,
)
from consumers.shared.filtering import CompiledFilter, compile_filter_criteria
from consumers.shared.planning import (
    Delete,
    Outcome,
    PlannedWrite,
    Skip,
    Transform,
    Upsert,
    WriteCounts,
    delete,
    mirror,
    plan_writes,
    skip,
    upsert,
)
from consumers.shared.records import (
    TOMBSTONE_ATTRIBUTE,
    TOMBSTONE_TTL_ATTRIBUTE,
    BinaryFormat,
    ChangeRecord,
    EventName,
    LazyImage,
    decode_image,
    encode_image,
    parse_payload,
)

__all__ = [
    "BinaryFormat",
    "CdcError",
    "ChangeRecord",
    "CompiledFilter",
    "Delete",
    "DynamoJsonError",
    "EventName",
    "InvalidChangeRecord",
    "InvalidFilterPattern",
    "InvalidPlan",
    "LazyImage",
    "Outcome",
    "PlannedWrite",
    "RetryableSinkError",
    "SinkError",
    "SinkRejectedWrite",
    "Skip",
    "TOMBSTONE_ATTRIBUTE",
    "TOMBSTONE_TTL_ATTRIBUTE",
    "Transform",
    "Upsert",
    "WriteCounts",
    "compile_filter_criteria",
    "decode_image",
    "delete",
    "encode_image",
    "mirror",
    "parse_payload",
    "plan_writes",
    "skip",
    "upsert",
]
