"""The sink kinds, by the name app.toml gives them (``[sink] type``): the one place that lists
them. Each kind is one module (``consumers.sinks.<kind>.kind``) holding everything the rest of
the project needs to know of it: its configuration schema (``parse``), its builder (``build``),
its read-back for ``make verify`` (``read_back``), its IAM statements, its task environment and
its CloudFormation resources (``consumers.sinks.deploy``). Adding a kind is a package of its
own and one line below; no other module changes.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from base.errors import CdcError
from consumers.sinks import Sink
from consumers.sinks.deploy import Cfn, Contribution, Json
from producer_config import PipelineConfig

__all__ = ["KINDS", "Clients", "SinkConfigError", "SinkKind", "SinkSpec", "SinkView", "kind_of"]

Contents = dict[Any, dict[str, Any]]


class SinkConfigError(CdcError, ValueError):
    """A ``[sink]`` key of an app.toml is wrong; ``key`` names it (``sink.document_id``)."""

    def __init__(self, key: str, reason: str) -> None:
        self.key = key
        self.reason = reason
        super().__init__(f"{key}: {reason}")


class SinkSpec(Protocol):
    """An app's parsed ``[sink]`` section: the kind's own frozen dataclass."""

    @property
    def type(self) -> str: ...
    @property
    def target(self) -> str: ...


class Clients(Protocol):
    """The clients of the target the sink runs against (``consumers.runtime.wiring`` makes them)."""

    @property
    def region(self) -> str: ...
    @property
    def target(self) -> str: ...  # local | localstack | aws

    def aws(self, service: str) -> Any: ...
    def opensearch(self) -> Any: ...


@dataclass(frozen=True, slots=True)
class SinkView:
    """How ``make verify`` reads a sink back: ``stored(upsert)`` is (identity, item) as the sink
    stores an upsert; ``actual()`` what it holds now, live items only. A sink whose contents
    are not a copy of its source table's (events sent, not items kept) gives
    ``expected(app, history)``: what ``actual()`` must equal, from the records of the app's
    stream in its retention (``services.kinesis.StreamRecord``: the source's history)."""

    label: str
    stored: Callable[[Any], tuple[Any, dict[str, Any]]]
    actual: Callable[[], Contents]
    expected: Callable[[Any, Iterable[Any]], Contents] | None = None


class SinkKind(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def options(self) -> tuple[str, ...]: ...  # the [sink] keys it accepts besides type and target

    def parse(self, target: str, options: Mapping[str, Any], pipeline: PipelineConfig) -> SinkSpec: ...
    def build(self, spec: Any, pipeline: PipelineConfig, clients: Clients) -> Sink: ...
    def read_back(self, spec: Any, pipeline: PipelineConfig, clients: Clients) -> SinkView: ...
    def iam_statements(self, spec: Any, pipeline: PipelineConfig, cfn: Cfn) -> list[Json]: ...
    def task_environment(self, spec: Any, cfn: Cfn) -> list[Json]: ...
    def deployment(
        self, pipeline: PipelineConfig, specs: Sequence[Any], roles: Sequence[str], cfn: Cfn
    ) -> Contribution: ...


def _kinds() -> dict[str, SinkKind]:
    from consumers.sinks.dynamodb.kind import KIND as DYNAMODB
    from consumers.sinks.opensearch.kind import KIND as OPENSEARCH
    from consumers.sinks.webhook.kind import KIND as WEBHOOK

    return {kind.name: kind for kind in (DYNAMODB, OPENSEARCH, WEBHOOK)}


KINDS: Mapping[str, SinkKind] = _kinds()


def kind_of(name: str) -> SinkKind:
    """The kind named ``name``; ``SinkConfigError`` naming the closest one otherwise."""
    kind = KINDS.get(name)
    if kind is None:
        close = difflib.get_close_matches(str(name), KINDS, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise SinkConfigError("sink.type", f"unknown sink type {name!r}: {hint}the types are {', '.join(KINDS)}")
    return kind
