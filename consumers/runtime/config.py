"""One consumer app's configuration (`consumers/<app>/app.toml`), loaded and validated once.

In the spirit of a serverless.yml function: source, batch size, filter criteria,
changed_attributes, starting position, polling interval, retry policy, dead-letter table,
sink. The KCL `.properties` file is generated from it (consumers.runtime.daemon).

On AWS, ``[scaling]`` (`Scaling`: the bounds and target of the ECS service's Application Auto
Scaling on the app's lag) and ``[alarms]`` (`Alarms`: the lag alarm's threshold) shape the
resources `infra.deploy.aws.template` generates for the app; they mean nothing locally.
"""

from __future__ import annotations

import importlib
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from consumers.runtime.batch import RetryPolicy  # re-exported: the policy belongs to the batch processor
from consumers.shared.filtering import CompiledFilter, InvalidFilterPattern, compile_filter_criteria
from consumers.shared.planning import Transform
from consumers.sinks.registry import KINDS, SinkConfigError, SinkSpec, kind_of
from producer_config import ConfigError, PipelineConfig, TableSpec, refuse_unknown_keys

__all__ = ["APPS_DIR", "Alarms", "AppConfig", "RetryPolicy", "Scaling", "discover_apps", "load_app"]

APPS_DIR = Path(__file__).resolve().parent.parent
_POSITIONS = ("TRIM_HORIZON", "LATEST", "AT_TIMESTAMP")
#: the KCL's own CloudWatch metrics (`metricsLevel`)
KCL_METRICS_LEVELS = ("NONE", "SUMMARY", "DETAILED")


@dataclass(frozen=True, slots=True)
class Scaling:
    """``[scaling]``: Application Auto Scaling of the app's ECS service (target tracking on the
    app's ``MillisBehindLatest``, the Maximum over its shards). A KCL worker holds whole shards,
    so a task beyond the source stream's shard count would hold nothing: ``max_workers`` defaults
    to that count and may not exceed it."""

    min_workers: int = 1
    #: `load_app`'s default: the source stream's shard count
    max_workers: int = 1
    #: the lag (ms) the target tracking policy keeps the app at
    target_lag_ms: int = 60_000
    scale_out_cooldown_s: int = 60
    #: long enough for the KCL to rebalance its leases after a task went
    scale_in_cooldown_s: int = 300


@dataclass(frozen=True, slots=True)
class Alarms:
    """``[alarms]``: the app's CloudWatch alarms (the dead-letter and task alarms have no key)."""

    #: alarm when the app's Maximum MillisBehindLatest exceeds this ...
    lag_ms: int = 300_000
    #: ... in this many consecutive periods of 60 s
    evaluation_periods: int = 3
    #: alarm when the p99 of ChangeToApplyLatency exceeds this for as many periods; None: no
    #: such alarm (a replay applies old changes: their latency is their age)
    latency_p99_ms: int | None = None


@dataclass(frozen=True, slots=True)
class AppConfig:
    package: str  # python package under consumers/, e.g. app_user_management
    name: str  # KCL applicationName: the lease table's name
    description: str
    source: TableSpec  # the table whose change stream the app reads
    stream_name: str
    transform_ref: str  # "module:function"
    sink: SinkSpec  # the sink kind's own spec (consumers.sinks.registry)
    max_records: int
    polling_interval_ms: int
    starting_position: str
    starting_timestamp: datetime | None
    workers: int
    retry: RetryPolicy
    dead_letter_table: str
    filter_criteria: Mapping[str, Any] | None
    changed_attributes: tuple[str, ...] | None
    source_file: str
    #: the KCL's metricsLevel; None: the target's default (consumers.runtime.daemon)
    kcl_metrics_level: str | None = None
    scaling: Scaling = Scaling()
    alarms: Alarms = Alarms()

    def compile_filter(self) -> CompiledFilter:
        return compile_filter_criteria(self.filter_criteria, changed_attributes=self.changed_attributes)

    def load_transform(self) -> Transform:
        module, _, function = self.transform_ref.partition(":")
        try:
            return getattr(importlib.import_module(module), function)
        except (ImportError, AttributeError) as exc:
            raise ConfigError(
                self.source_file, "app.transform", f"cannot import {self.transform_ref!r}: {exc}"
            ) from exc


def discover_apps(pipeline: PipelineConfig) -> tuple[AppConfig, ...]:
    """Every `consumers/*/app.toml`, sorted by package name."""
    return tuple(load_app(path.parent.name, pipeline) for path in sorted(APPS_DIR.glob("*/app.toml")))


#: every key app.toml may hold, per section; anything else is refused (a misspelt key would
#: otherwise silently fall back to its default)
_KEYS = {
    "app": ("name", "description", "source_table", "transform", "workers"),
    "sink": ("type", "target", *sorted({option for kind in KINDS.values() for option in kind.options})),
    "batch": ("max_records", "polling_interval_ms", "starting_position", "starting_timestamp"),
    "retry": ("max_attempts", "base_delay_ms", "max_delay_ms", "maximum_record_age_s"),
    "dead_letter": ("table",),
    "filter": ("criteria", "changed_attributes"),
    "kcl": ("metrics_level",),
    "scaling": ("min_workers", "max_workers", "target_lag_ms", "scale_out_cooldown_s", "scale_in_cooldown_s"),
    "alarms": ("lag_ms", "evaluation_periods", "latency_p99_ms"),
}
#: CloudWatch evaluates at most one day of periods (EvaluationPeriods x Period <= 86400 s)
_MAX_EVALUATION_PERIODS = 24 * 60


def _check_keys(path: Path, raw: Mapping[str, Any]) -> None:
    refuse_unknown_keys(path, "", raw, tuple(_KEYS))
    for name, value in raw.items():
        if isinstance(value, Mapping):
            refuse_unknown_keys(path, name, value, _KEYS[name])


def _sink(path: Path, section: Mapping[str, Any], type_: str, target: str, pipeline: PipelineConfig) -> SinkSpec:
    """The ``[sink]`` section, parsed by its kind; an option of another kind is refused."""
    try:
        kind = kind_of(type_)
        foreign = sorted(set(section) - {"type", "target", *kind.options})
        if foreign:
            owners = " or ".join(f'"{k.name}"' for k in KINDS.values() if foreign[0] in k.options)
            raise SinkConfigError(f"sink.{foreign[0]}", f"applies to sink.type = {owners} only: remove it")
        return kind.parse(target, section, pipeline)
    except SinkConfigError as exc:
        raise ConfigError(path, exc.key, exc.reason) from None


def _scaling(path: Path, workers: int, stream: str, pipeline: PipelineConfig, integer: Callable[..., int]) -> Scaling:
    """``[scaling]``: min <= app.workers <= max <= the source stream's shards."""
    shards = pipeline.streams[stream].shards
    minimum = integer("scaling", "min_workers", 1)
    maximum = integer("scaling", "max_workers", shards)
    if maximum > shards:
        raise ConfigError(
            path,
            "scaling.max_workers",
            f"{maximum} is more than the {shards} shard(s) of stream {stream!r}: a KCL worker beyond "
            f"the shard count holds no lease; set it to {shards} or less, or leave it out (default: {shards})",
        )
    if maximum < minimum:
        raise ConfigError(
            path,
            "scaling.max_workers",
            f"{maximum} is less than scaling.min_workers ({minimum}): raise it or lower that",
        )
    if not minimum <= workers <= maximum:
        raise ConfigError(
            path,
            "app.workers",
            f"{workers} is outside [scaling] min_workers..max_workers ({minimum}..{maximum}; max_workers defaults "
            f"to the {shards} shard(s) of stream {stream!r}): the service starts at app.workers and autoscaling "
            "would move it at once; set app.workers within the range or widen it",
        )
    return Scaling(
        min_workers=minimum,
        max_workers=maximum,
        target_lag_ms=integer("scaling", "target_lag_ms", 60_000),
        scale_out_cooldown_s=integer("scaling", "scale_out_cooldown_s", 60, minimum=0),
        scale_in_cooldown_s=integer("scaling", "scale_in_cooldown_s", 300, minimum=0),
    )


def _alarms(path: Path, scaling: Scaling, integer: Callable[..., int]) -> Alarms:
    """``[alarms]``: the lag alarm above the scaling target (else it fires in the steady state)."""
    lag_ms = integer("alarms", "lag_ms", 300_000)
    if lag_ms <= scaling.target_lag_ms:
        raise ConfigError(
            path,
            "alarms.lag_ms",
            f"{lag_ms} is not above scaling.target_lag_ms ({scaling.target_lag_ms}), the lag autoscaling aims at: "
            "the alarm would fire in the steady state; raise it or lower the target",
        )
    periods = integer("alarms", "evaluation_periods", 3)
    if periods > _MAX_EVALUATION_PERIODS:
        raise ConfigError(
            path,
            "alarms.evaluation_periods",
            f"{periods} periods of 60 s exceed the day CloudWatch evaluates: set {_MAX_EVALUATION_PERIODS} or less",
        )
    latency = integer("alarms", "latency_p99_ms", 0, minimum=0) or None
    return Alarms(lag_ms=lag_ms, evaluation_periods=periods, latency_p99_ms=latency)


def load_app(package: str, pipeline: PipelineConfig) -> AppConfig:
    path = APPS_DIR / package / "app.toml"
    try:
        raw = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(path, "file", str(exc)) from exc

    _check_keys(path, raw)

    def section(name: str) -> Mapping[str, Any]:
        value = raw.get(name, {})
        if not isinstance(value, Mapping):
            raise ConfigError(path, name, "must be a table")
        return value

    def get(sec: str, key: str, kind: type, default: Any = ...) -> Any:
        value = section(sec).get(key, default)
        if value is ...:
            raise ConfigError(path, f"{sec}.{key}", "is required")
        if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
            raise ConfigError(path, f"{sec}.{key}", f"must be {kind.__name__}, got {value!r}")
        return value

    def integer(sec: str, key: str, default: int, minimum: int = 1, unlimited: bool = False) -> int:
        value = get(sec, key, int, default)
        if value < minimum and not (unlimited and value == -1):
            raise ConfigError(path, f"{sec}.{key}", f"must be >= {minimum}{' or -1' if unlimited else ''}, got {value}")
        return value

    source = pipeline.tables.get(get("app", "source_table", str))
    if source is None or not source.change_stream:
        raise ConfigError(path, "app.source_table", "must name a table of producer_config with a change_stream")
    sink = _sink(path, section("sink"), get("sink", "type", str), get("sink", "target", str), pipeline)
    position = get("batch", "starting_position", str, "TRIM_HORIZON")
    if position not in _POSITIONS:
        raise ConfigError(path, "batch.starting_position", f"must be one of {_POSITIONS}, got {position!r}")
    timestamp = section("batch").get("starting_timestamp")
    if (position == "AT_TIMESTAMP") != isinstance(timestamp, datetime):
        raise ConfigError(path, "batch.starting_timestamp", "an offset date-time, required with AT_TIMESTAMP only")
    metrics_level = section("kcl").get("metrics_level")
    if metrics_level is not None and metrics_level not in KCL_METRICS_LEVELS:
        raise ConfigError(path, "kcl.metrics_level", f"must be one of {KCL_METRICS_LEVELS}, got {metrics_level!r}")
    changed = section("filter").get("changed_attributes")
    if changed is not None and (not isinstance(changed, list) or not all(isinstance(a, str) for a in changed)):
        raise ConfigError(path, "filter.changed_attributes", "must be a list of attribute names")
    workers = integer("app", "workers", 1)
    scaling = _scaling(path, workers, source.change_stream, pipeline, integer)
    config = AppConfig(
        package=package,
        name=get("app", "name", str),
        description=get("app", "description", str, ""),
        source=source,
        stream_name=source.change_stream,
        transform_ref=get("app", "transform", str),
        sink=sink,
        max_records=integer("batch", "max_records", 500),
        polling_interval_ms=integer("batch", "polling_interval_ms", 200, minimum=50),
        starting_position=position,
        starting_timestamp=timestamp,
        workers=workers,
        retry=RetryPolicy(
            max_attempts=integer("retry", "max_attempts", 8, unlimited=True),
            base_delay_ms=integer("retry", "base_delay_ms", 100),
            max_delay_ms=integer("retry", "max_delay_ms", 5_000),
            maximum_record_age_s=integer("retry", "maximum_record_age_s", -1, unlimited=True),
        ),
        dead_letter_table=get("dead_letter", "table", str),
        filter_criteria=section("filter").get("criteria"),
        changed_attributes=tuple(changed) if changed is not None else None,
        source_file=str(path),
        kcl_metrics_level=metrics_level,
        scaling=scaling,
        alarms=_alarms(path, scaling, integer),
    )
    try:
        config.compile_filter()  # fail at start-up, with the pattern and the reason
    except InvalidFilterPattern as exc:
        raise ConfigError(path, "filter.criteria", str(exc)) from exc
    return config
