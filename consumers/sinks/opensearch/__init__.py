"""The ``opensearch`` sink kind: one ``_bulk`` request per batch, guarded by external versions.

    sink   ``OpenSearchSink``, document ids, serialisation, what OpenSearch's answers mean
    kind   the plug-in: app.toml options, builder, verify read-back, IAM, the domain on AWS

The names below are the kind's public API.
"""

from consumers.sinks.opensearch.sink import *  # noqa: F403 - the kind's public API is its sink module's
from consumers.sinks.opensearch.sink import __all__ as __all__
