"""What a sink kind contributes to the AWS deployment, and the CloudFormation helpers it is
given to build it (``infra.deploy.aws.template`` passes them in: the kind imports nothing of
the deployment layer).

A kind answers, for the apps that use it: the task role's statements (``iam_statements``), the
task's environment (``task_environment``), and once for all of them the resources, parameters,
conditions and outputs it needs (``Contribution``; an OpenSearch domain, for example).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = ["Cfn", "Contribution", "Json"]

Json = Any


class Cfn(Protocol):
    """CloudFormation intrinsics and the template's conventions."""

    def ref(self, name: str) -> Json: ...
    def sub(self, text: str) -> Json: ...
    def get_att(self, resource: str, attribute: str = "Arn") -> Json: ...
    def table_arn(self, name: str) -> Json: ...
    def tags(self, **extra: str) -> list[Json]: ...
    def skips(self, kind: str) -> Json: ...


@dataclass(frozen=True, slots=True)
class Contribution:
    """A kind's shared part of the template; ``specs`` are its apps' ``[sink]`` sections and
    ``roles`` their task roles."""

    parameters: Mapping[str, Json] = field(default_factory=dict)
    conditions: Mapping[str, Json] = field(default_factory=dict)
    resources: Mapping[str, Json] = field(default_factory=dict)
    outputs: Mapping[str, Json] = field(default_factory=dict)


def no_contribution(pipeline: object, specs: Sequence[object], roles: Sequence[str], cfn: Cfn) -> Contribution:
    return Contribution()
