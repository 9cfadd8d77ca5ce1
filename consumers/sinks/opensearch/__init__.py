"""The ``opensearch`` sink kind: one ``_bulk`` request per batch, guarded by external versions.

    sink   ``OpenSearchSink``, document ids, serialisation, what OpenSearch's answers mean
    kind   the plug-in: app.toml options, builder, verify read-back, IAM, the domain on AWS

The names below are the kind's public API.
"""

from consumers.sinks.opensearch.sink import (
    DELETE_VERSION_TYPE,
    INDEX_VERSION_TYPE,
    OpenSearchSink,
    OpenSearchSinkConfig,
    build_bulk_body,
    classify_bulk_item,
    classify_transport_error,
    default_document_id,
    serialise_document,
    template_document_id,
)

__all__ = [
    "DELETE_VERSION_TYPE",
    "INDEX_VERSION_TYPE",
    "OpenSearchSink",
    "OpenSearchSinkConfig",
    "build_bulk_body",
    "classify_bulk_item",
    "classify_transport_error",
    "default_document_id",
    "serialise_document",
    "template_document_id",
]
