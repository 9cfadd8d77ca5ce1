"""Where the stack runs and how to reach it: one frozen record built from the environment.

Every port, directory and endpoint is configurable through a ``CDC_*`` variable (see the
README's configuration reference); defaults give the local stack on 127.0.0.1.

Targets (``CDC_TARGET``, or ``STACK`` in the Makefile):
  local       processes started by this project: DynamoDB Local, kinesis-mock, OpenSearch, relay;
  localstack  LocalStack's single endpoint (LOCALSTACK_HOST, default 127.0.0.1:4566) with its
              native streaming destination; the one already answering there, else one started
              with Docker compose or in host mode (infra/localstack.py); OpenSearch is the
              project's own node, as on the local stack. State: .state-localstack/;
  aws         real AWS through the default credential chain; CDC_OPENSEARCH_URL must be set.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from consumers.shared.errors import CdcError

__all__ = ["REPO_ROOT", "StackConfig", "StackError", "Target"]

REPO_ROOT = Path(__file__).resolve().parent.parent
OPENSEARCH_MAX_HTTP_PORT = 9299


class StackError(CdcError):
    """The local stack cannot be installed, started, reached or provisioned."""


class Target(str, Enum):
    LOCAL = "local"
    LOCALSTACK = "localstack"
    AWS = "aws"


@dataclass(frozen=True, slots=True)
class StackConfig:
    target: Target
    bind_host: str
    state_dir: Path
    deps_dir: Path
    dynamodb_port: int
    leases_port: int
    kinesis_port: int
    kinesis_tls_port: int
    opensearch_port: int
    opensearch_transport_port: int
    aws_endpoint: str | None  # a single AWS-style endpoint (MiniStack, Floci, ...); None elsewhere
    localstack_host: str  # host:port of LocalStack's gateway (LOCALSTACK_HOST)
    localstack_mode: str  # auto | external | docker | host (CDC_LOCALSTACK_MODE; infra/localstack.py)
    opensearch_url_override: str | None
    health_timeout_s: float
    opensearch_heap: str
    kinesis_persist_interval: str

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> StackConfig:
        def port(name: str, default: int) -> int:
            raw = env.get(name, str(default))
            if not raw.isdigit() or not 0 < int(raw) < 65536:
                raise StackError(f"{name}={raw!r} is not a TCP port")
            return int(raw)

        try:
            target = Target(env.get("CDC_TARGET", "local"))
        except ValueError:
            raise StackError(f"CDC_TARGET={env['CDC_TARGET']!r}: expected one of {[t.value for t in Target]}") from None
        aws_endpoint = env.get("CDC_AWS_ENDPOINT") or None
        default_state = REPO_ROOT / (".state-localstack" if target is Target.LOCALSTACK else ".state")
        localstack_host = env.get("LOCALSTACK_HOST", "127.0.0.1:4566")
        if not re.fullmatch(r"[\w.\-]+:\d{1,5}", localstack_host):
            raise StackError(f"LOCALSTACK_HOST={localstack_host!r}: expected host:port, e.g. 127.0.0.1:4566")
        opensearch_port = port("CDC_OPENSEARCH_PORT", 9200)
        if not 1 < opensearch_port <= OPENSEARCH_MAX_HTTP_PORT:
            # org.codelibs OpenSearchRunner looks for a free HTTP port in (base, 9299] only
            raise StackError(
                f"CDC_OPENSEARCH_PORT={opensearch_port}: the local OpenSearch node serves HTTP on ports up to "
                f"{OPENSEARCH_MAX_HTTP_PORT} only; pick one in 9200-{OPENSEARCH_MAX_HTTP_PORT}"
            )
        localstack_mode = env.get("CDC_LOCALSTACK_MODE", "auto")
        if localstack_mode not in ("auto", "external", "docker", "host"):
            raise StackError(f"CDC_LOCALSTACK_MODE={localstack_mode!r}: expected auto, external, docker or host")
        return cls(
            target=target,
            bind_host=env.get("CDC_BIND_HOST", "127.0.0.1"),
            state_dir=Path(env.get("CDC_STATE_DIR", default_state)).resolve(),
            deps_dir=Path(env.get("CDC_DEPS_DIR", REPO_ROOT / ".deps")).resolve(),
            dynamodb_port=port("CDC_DYNAMODB_PORT", 8000),
            leases_port=port("CDC_LEASES_PORT", 8001),
            kinesis_port=port("CDC_KINESIS_PORT", 4567),
            kinesis_tls_port=port("CDC_KINESIS_TLS_PORT", 4568),
            opensearch_port=opensearch_port,
            opensearch_transport_port=port("CDC_OPENSEARCH_TRANSPORT_PORT", 9300),
            aws_endpoint=aws_endpoint,
            localstack_host=localstack_host,
            localstack_mode=localstack_mode,
            opensearch_url_override=env.get("CDC_OPENSEARCH_URL"),
            health_timeout_s=float(env.get("CDC_HEALTH_TIMEOUT", "90")),
            opensearch_heap=env.get("CDC_OPENSEARCH_HEAP", "512m"),
            # kinesis-mock rewrites all its data at every interval (CPU grows with retained
            # records); it also writes on SIGTERM. A SIGKILL loses what it acknowledged since
            # its last save; the relay's position and the consumers' checkpoints only move past
            # records it saved (infra/snapshots.py).
            kinesis_persist_interval=env.get("CDC_KINESIS_PERSIST_INTERVAL", "10s"),
        )

    @property
    def kinesis_snapshot(self) -> Path:
        """The file kinesis-mock saves all its data to: PERSIST_PATH/kinesis-data.json on the local
        stack; on LocalStack in host mode, its engine's file for the default account."""
        if self.target is Target.LOCALSTACK:
            return self.localstack_root / "var" / "lib" / "localstack" / "state" / "kinesis" / "000000000000.json"
        return self.data_dir / "kinesis" / "kinesis-data.json"

    @property
    def localstack_root(self) -> Path:
        """LocalStack's FILESYSTEM_ROOT in host mode (its engines, their data, its cache)."""
        return self.state_dir / "localstack"

    @property
    def localstack_endpoint(self) -> str:
        return f"http://{self.localstack_host}"

    # ---------------------------------------------------------------- endpoints per service
    @property
    def dynamodb_endpoint(self) -> str | None:
        if self.target is Target.LOCAL:
            return f"http://{self.bind_host}:{self.dynamodb_port}"
        return self._single_endpoint

    @property
    def leases_endpoint(self) -> str | None:
        """Where the KCL keeps its lease, coordinator and worker-metrics tables. The local stack
        runs a second DynamoDB Local for them: DynamoDB Local runs one transaction at a time and
        the others wait, so with the sinks' transactions on the data instance a lease renewal
        queued behind them until it timed out (README, Decisions). Elsewhere: DynamoDB itself."""
        if self.target is Target.LOCAL:
            return f"http://{self.bind_host}:{self.leases_port}"
        return self.dynamodb_endpoint

    @property
    def kinesis_endpoint(self) -> str | None:
        if self.target is Target.LOCAL:
            return f"http://{self.bind_host}:{self.kinesis_port}"
        return self._single_endpoint

    @property
    def _single_endpoint(self) -> str | None:
        """LocalStack's gateway, or CDC_AWS_ENDPOINT; None on AWS (the SDKs' own endpoints)."""
        if self.aws_endpoint or self.target is Target.AWS:
            return self.aws_endpoint
        return self.localstack_endpoint

    @property
    def opensearch_url(self) -> str:
        if self.opensearch_url_override:
            return self.opensearch_url_override
        if self.target is Target.AWS:
            raise StackError("CDC_TARGET=aws needs CDC_OPENSEARCH_URL (your OpenSearch domain endpoint)")
        return f"http://{self.bind_host}:{self.opensearch_port}"

    # ------------------------------------------------------------------------- state layout
    @property
    def pid_dir(self) -> Path:
        return self.state_dir / "pids"

    @property
    def log_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def data_dir(self) -> Path:
        return self.state_dir / "data"

    @property
    def relay_dir(self) -> Path:
        return self.state_dir / "relay"
