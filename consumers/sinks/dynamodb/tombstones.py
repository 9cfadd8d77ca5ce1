"""The tombstone convention of the DynamoDB sink kind: public, for the apps that read a sink
table's own change stream.

A ``Delete`` does not remove the item: the sink puts a *tombstone*, the key, the version,
``TOMBSTONE_ATTRIBUTE = true`` and ``TOMBSTONE_TTL_ATTRIBUTE = now + retention`` (epoch
seconds; the table's TTL is enabled on that attribute), so that a late, older upsert fails its
condition instead of resurrecting the item. Keep the retention longer than the source stream's
retention (Kinesis: 24 h by default, up to 365 days), or a replay older than the tombstone
could resurrect an item.

Consumers of the table's own change stream see "item replaced by tombstone" as a MODIFY whose
NewImage carries ``TOMBSTONE_ATTRIBUTE``: they must treat it as a delete (``is_tombstone``; see
``consumers.workplace_user_search.transform``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["TOMBSTONE_ATTRIBUTE", "TOMBSTONE_TTL_ATTRIBUTE", "is_tombstone"]

#: Attribute that marks an item written by the sink as a logical delete (a tombstone). Its
#: value is ``{"BOOL": true}``; its presence alone makes the item a tombstone.
TOMBSTONE_ATTRIBUTE = "_cdc_tombstone"
#: Attribute holding a tombstone's expiry (epoch seconds); enable table TTL on it.
TOMBSTONE_TTL_ATTRIBUTE = "_cdc_expires_at"


def is_tombstone(image: Mapping[str, Any] | None) -> bool:
    """Whether an item image (decoded or DynamoDB JSON) is a tombstone of the sink."""
    return image is not None and TOMBSTONE_ATTRIBUTE in image
