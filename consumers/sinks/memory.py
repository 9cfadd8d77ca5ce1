"""An in-memory sink with the same version guard as the real adapters, for tests.

``InMemorySink`` implements ``write(writes) -> list[WriteResult]`` like the real sinks: an ``Upsert`` applies when the key is absent or its stored version is lower;
a ``Delete`` applies when the key is absent or its stored version is lower or equal, and leaves
a tombstone (``StoredItem.document is None``) holding the version. See
``consumers.shared.planning.should_apply``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from consumers.shared.planning import (
    APPLIED,
    SKIPPED,
    STALE,
    Delete,
    PlannedWrite,
    Skip,
    Upsert,
    WriteResult,
    should_apply,
)

__all__ = ["InMemorySink", "StoredItem", "key_of"]

Key = tuple[tuple[str, Any], ...]


def key_of(key: Mapping[str, Any]) -> Key:
    """A hashable form of a key mapping (attribute order does not matter)."""
    return tuple(sorted(key.items()))


@dataclass(frozen=True, slots=True)
class StoredItem:
    """What the sink holds for one key: a document, or a tombstone (``document is None``)."""

    version: int
    document: Mapping[str, Any] | None

    @property
    def is_tombstone(self) -> bool:
        return self.document is None


class InMemorySink:
    """A dict of ``StoredItem`` guarded like the real sinks. Not thread-safe."""

    def __init__(self) -> None:
        self._items: dict[Key, StoredItem] = {}

    def apply(self, write: PlannedWrite) -> WriteResult:
        if type(write) is Skip:
            return SKIPPED
        if type(write) is not Upsert and type(write) is not Delete:
            raise TypeError(f"not a planned write: {write!r}")
        key = key_of(write.key)
        stored = self._items.get(key)
        if not should_apply(write, None if stored is None else stored.version):
            return STALE
        if type(write) is Upsert:
            self._items[key] = StoredItem(write.version, {**write.document, **write.key})
        else:
            self._items[key] = StoredItem(write.version, None)
        return APPLIED

    def write(self, writes: Sequence[PlannedWrite]) -> list[WriteResult]:
        return [self.apply(write) for write in writes]

    def get(self, key: Mapping[str, Any]) -> StoredItem | None:
        return self._items.get(key_of(key))

    def items(self) -> dict[Key, StoredItem]:
        """Everything held, tombstones included (a copy)."""
        return dict(self._items)

    def documents(self) -> dict[Key, Mapping[str, Any]]:
        """The live documents (tombstones left out)."""
        return {k: v.document for k, v in self._items.items() if v.document is not None}
