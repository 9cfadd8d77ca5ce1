"""The pipeline's declarative configuration, loaded and validated once into frozen records.

`pipeline.toml` beside this file is the single source of truth for tables, change streams,
the streaming destination and the search index; everything else (provisioning, the relay,
the KCL properties of the consumer apps) derives from what :func:`load_pipeline` returns.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from base.errors import CdcError, closest

__all__ = [
    "ConfigError",
    "DEFAULT_PIPELINE_FILE",
    "IndexSpec",
    "KeyAttribute",
    "PipelineConfig",
    "StreamSpec",
    "TableSpec",
    "load_pipeline",
    "refuse_unknown_keys",
]

DEFAULT_PIPELINE_FILE = Path(__file__).with_name("pipeline.toml")
_KEY_TYPES = frozenset({"S", "N", "B"})
_PRECISIONS = frozenset({"MILLISECOND", "MICROSECOND"})
_TABLE_KEYS = ("hash_key", "range_key", "version_attribute", "ttl_attribute", "change_stream")
_DESTINATION_KEYS = ("approximate_creation_date_time_precision",)


class ConfigError(CdcError):
    """A configuration file is missing a value or holds a wrong one."""

    def __init__(self, source: Path | str, where: str, reason: str) -> None:
        super().__init__(f"{source}: {where}: {reason}")
        self.source = str(source)
        self.where = where
        self.reason = reason


def refuse_unknown_keys(source: Path | str, where: str, raw: Mapping[str, Any], keys: Iterable[str]) -> None:
    """A key of the table ``raw`` (at ``where``, "" for the top level) that is not one of
    ``keys`` fails with the closest match: a misspelt key would otherwise silently fall back
    to its default."""
    keys = tuple(keys)
    for key in raw:
        if key not in keys:
            raise ConfigError(
                source,
                f"{where}.{key}" if where else key,
                f"unknown key: {closest(key, keys)}the keys here are {', '.join(keys)}",
            )


@dataclass(frozen=True, slots=True)
class KeyAttribute:
    name: str
    type: str  # S | N | B


@dataclass(frozen=True, slots=True)
class TableSpec:
    name: str
    hash_key: KeyAttribute
    range_key: KeyAttribute | None
    version_attribute: str | None
    ttl_attribute: str | None
    change_stream: str | None

    @property
    def stream(self) -> str:
        """The name of the table's change stream; ``ValueError`` for a table that has none."""
        if self.change_stream is None:
            raise ValueError(f"table {self.name} has no change_stream in producer_config")
        return self.change_stream

    @property
    def key_attributes(self) -> tuple[KeyAttribute, ...]:
        return (self.hash_key,) if self.range_key is None else (self.hash_key, self.range_key)

    @property
    def key_names(self) -> tuple[str, ...]:
        return tuple(k.name for k in self.key_attributes)


@dataclass(frozen=True, slots=True)
class StreamSpec:
    name: str
    shards: int
    retention_hours: int


@dataclass(frozen=True, slots=True)
class IndexSpec:
    name: str
    source_table: str
    settings: Mapping[str, Any]
    mappings: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class PipelineConfig:
    source: str
    region: str
    tables: Mapping[str, TableSpec]
    streams: Mapping[str, StreamSpec]
    indexes: Mapping[str, IndexSpec]
    creation_time_precision: str  # MILLISECOND | MICROSECOND

    @property
    def source_tables(self) -> tuple[TableSpec, ...]:
        """Tables whose changes stream into Kinesis."""
        return tuple(t for t in self.tables.values() if t.change_stream)

    def table(self, name: str) -> TableSpec:
        try:
            return self.tables[name]
        except KeyError:
            raise ConfigError(self.source, f"tables.{name}", "no such table") from None


def load_pipeline(path: Path | str = DEFAULT_PIPELINE_FILE) -> PipelineConfig:
    """Read and validate the pipeline file; every error names the file, the key and the reason."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(path, "file", str(exc)) from exc
    reader = _Reader(path)
    refuse_unknown_keys(path, "", raw, ("region", "tables", "streams", "streaming_destination", "indexes"))
    for name, spec in reader.table(raw, "streams").items():
        if isinstance(spec, Mapping):
            refuse_unknown_keys(path, f"streams.{name}", spec, ("shards", "retention_hours"))
    for name, spec in reader.table(raw, "indexes", required=False).items():
        if isinstance(spec, Mapping):
            refuse_unknown_keys(path, f"indexes.{name}", spec, ("source_table", "settings", "mappings"))
    refuse_unknown_keys(path, "streaming_destination", reader.table(raw, "streaming_destination"), _DESTINATION_KEYS)
    streams = {
        name: StreamSpec(
            name=name,
            shards=reader.positive_int(spec, f"streams.{name}.shards"),
            retention_hours=reader.retention(spec, f"streams.{name}.retention_hours"),
        )
        for name, spec in reader.table(raw, "streams").items()
    }
    tables = {name: reader.table_spec(name, spec, streams) for name, spec in reader.table(raw, "tables").items()}
    indexes = {}
    for name, spec in reader.table(raw, "indexes", required=False).items():
        source_table = reader.string(spec, f"indexes.{name}.source_table")
        if source_table not in tables:
            raise ConfigError(path, f"indexes.{name}.source_table", f"unknown table {source_table!r}")
        indexes[name] = IndexSpec(
            name=name,
            source_table=source_table,
            settings=_freeze(spec.get("settings", {})),
            mappings=_freeze(spec.get("mappings", {})),
        )
    precision = reader.table(raw, "streaming_destination").get("approximate_creation_date_time_precision")
    if precision not in _PRECISIONS:
        raise ConfigError(
            path,
            "streaming_destination.approximate_creation_date_time_precision",
            f"must be one of {sorted(_PRECISIONS)}, got {precision!r}",
        )
    return PipelineConfig(
        source=str(path),
        region=reader.string(raw, "region"),
        tables=MappingProxyType(tables),
        streams=MappingProxyType(streams),
        indexes=MappingProxyType(indexes),
        creation_time_precision=precision,
    )


class _Reader:
    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, where: str, reason: str) -> ConfigError:
        return ConfigError(self.path, where, reason)

    def table(self, raw: Mapping[str, Any], where: str, required: bool = True) -> Mapping[str, Any]:
        value = raw.get(where.rsplit(".", 1)[-1])
        if value is None and not required:
            return {}
        if not isinstance(value, Mapping):
            raise self.fail(where, "must be a table")
        return value

    def string(self, raw: Mapping[str, Any], where: str) -> str:
        value = raw.get(where.rsplit(".", 1)[-1])
        if not isinstance(value, str) or not value:
            raise self.fail(where, f"must be a non-empty string, got {value!r}")
        return value

    def positive_int(self, raw: Mapping[str, Any], where: str) -> int:
        value = raw.get(where.rsplit(".", 1)[-1])
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise self.fail(where, f"must be a positive integer, got {value!r}")
        return value

    def retention(self, raw: Mapping[str, Any], where: str) -> int:
        value = self.positive_int(raw, where)
        if not 24 <= value <= 8760:
            raise self.fail(where, f"Kinesis retention must be 24..8760 hours, got {value}")
        return value

    def key(self, raw: Any, where: str) -> KeyAttribute:
        if isinstance(raw, Mapping):
            refuse_unknown_keys(self.path, where, raw, ("name", "type"))
        if not isinstance(raw, Mapping) or not isinstance(raw.get("name"), str) or raw.get("type") not in _KEY_TYPES:
            raise self.fail(where, f'must be {{ name = "...", type = "S" | "N" | "B" }}, got {raw!r}')
        return KeyAttribute(raw["name"], raw["type"])

    def optional_string(self, raw: Mapping[str, Any], where: str) -> str | None:
        return None if raw.get(where.rsplit(".", 1)[-1]) is None else self.string(raw, where)

    def table_spec(self, name: str, raw: Mapping[str, Any], streams: Mapping[str, StreamSpec]) -> TableSpec:
        where = f"tables.{name}"
        if not isinstance(raw, Mapping):
            raise self.fail(where, "must be a table")
        refuse_unknown_keys(self.path, where, raw, _TABLE_KEYS)
        stream = self.optional_string(raw, f"{where}.change_stream")
        if stream is not None and stream not in streams:
            raise self.fail(f"{where}.change_stream", f"no [streams.{stream}] is defined")
        return TableSpec(
            name=name,
            hash_key=self.key(raw.get("hash_key"), f"{where}.hash_key"),
            range_key=None if raw.get("range_key") is None else self.key(raw["range_key"], f"{where}.range_key"),
            version_attribute=self.optional_string(raw, f"{where}.version_attribute"),
            ttl_attribute=self.optional_string(raw, f"{where}.ttl_attribute"),
            change_stream=stream,
        )


def _freeze(value: Any) -> Any:
    """Read-only view of nested config tables (they are handed to clients as plain dicts)."""
    if isinstance(value, Mapping):
        return MappingProxyType({k: _freeze(v) for k, v in value.items()})
    return value


def thaw(value: Any) -> Any:
    """Plain dict/list copy of a frozen config value, for client calls that need JSON."""
    if isinstance(value, Mapping):
        return {k: thaw(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [thaw(v) for v in value]
    return value
