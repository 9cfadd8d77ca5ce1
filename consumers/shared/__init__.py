"""Shared, pure core of the CDC consumers: codec, change envelope and records, filtering, write planning, errors.

No I/O and no client library (boto3, opensearch-py): sinks, dead letters and the KCL runtime
are adapters built on this core (``consumers.sinks``, ``consumers.runtime``); a contract in
``tests/unit/test_layers.py`` keeps it so.

Import from the modules (``consumers.shared.records`` ...); the names below are re-exported
for convenience. Nothing here prints: stdout belongs to the KCL MultiLangDaemon.
"""

from consumers.shared.errors import (
    CdcError,
    DynamoJsonError,
    InvalidChangeRecord,
    InvalidFilterPattern,
    InvalidPlan,
    SinkError,
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
    WriteResult,
    delete,
    mirror,
    plan_writes,
    skip,
    upsert,
)
from consumers.shared.records import (
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
    "SinkError",
    "Skip",
    "Transform",
    "Upsert",
    "WriteCounts",
    "WriteResult",
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
