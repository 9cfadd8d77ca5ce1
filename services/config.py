"""Where the stack runs and how to reach it: one frozen record built from the environment.

Every port, directory and endpoint is configurable through a ``CDC_*`` variable (see the
docs/configuration.md); defaults give the local stack on 127.0.0.1.

Targets (``CDC_TARGET``, or ``STACK`` in the Makefile):
  local       processes started by this project: DynamoDB Local, kinesis-mock, OpenSearch, relay;
  localstack  LocalStack's single endpoint (LOCALSTACK_HOST, default 127.0.0.1:4566) with its
              native streaming destination; the one already answering there, else one started
              with Docker compose or in host mode (infra/local/localstack.py); OpenSearch is the
              project's own node, as on the local stack. State: .state-localstack/;
  aws         AWS through the default credential chain and the SDKs' own endpoint settings
              (AWS_ENDPOINT_URL, AWS_ENDPOINT_URL_<SERVICE>: the tests point them at LocalStack
              and moto); CDC_OPENSEARCH_URL must be set. The workers are ECS services. State
              (lease backups, logs of `cdc`): .state-aws/.

How the OpenSearch client authenticates and checks TLS (`OpenSearchSecurity`) comes from
CDC_OPENSEARCH_AUTH (none | basic | sigv4) and the variables beside it, read here only.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from base.errors import CdcError, closest

__all__ = ["REPO_ROOT", "VARIABLES", "OpenSearchAuth", "OpenSearchSecurity", "StackConfig", "StackError", "Target"]

REPO_ROOT = Path(__file__).resolve().parent.parent
OPENSEARCH_MAX_HTTP_PORT = 9299


#: every CDC_* variable the project reads (docs/configuration.md, Environment); any other one is refused with the
#: closest match, as a misspelt one would otherwise be ignored (tests/unit checks the list)
VARIABLES = frozenset(
    {
        "CDC_APP",  # the worker image: which app its task runs
        "CDC_AWS_ENDPOINT",
        "CDC_BIND_HOST",
        "CDC_DEPS_DIR",
        "CDC_DYNAMODB_LAUNCHER",  # set by infra/local/localstack.py for LocalStack's DynamoDB Local
        "CDC_DYNAMODB_PORT",
        "CDC_HEALTH_TIMEOUT",
        "CDC_KINESIS_PERSIST_INTERVAL",
        "CDC_KINESIS_PORT",
        "CDC_KINESIS_TLS_PORT",
        "CDC_LEASES_PORT",
        "CDC_LOCALSTACK_MODE",
        "CDC_LOCALSTACK_PORT",  # set by infra/local/localstack.py for LocalStack's Kinesis
        "CDC_METRICS",
        "CDC_METRICS_PATH",
        "CDC_NODE_MODULES",  # set by infra/local/localstack.py for LocalStack's Kinesis
        "CDC_OPENSEARCH_AUTH",
        "CDC_OPENSEARCH_CA_CERTS",
        "CDC_OPENSEARCH_HEAP",
        "CDC_OPENSEARCH_PASSWORD",
        "CDC_OPENSEARCH_PASSWORD_FILE",
        "CDC_OPENSEARCH_PORT",
        "CDC_OPENSEARCH_REGION",
        "CDC_OPENSEARCH_SERVICE",
        "CDC_OPENSEARCH_TRANSPORT_PORT",
        "CDC_OPENSEARCH_URL",
        "CDC_OPENSEARCH_USERNAME",
        "CDC_OPENSEARCH_VERIFY_CERTS",
        "CDC_STATE_DIR",
        "CDC_WEBHOOK_PORT",  # the local webhook receiver (infra/local/webhooks.py)
        "CDC_SUPERVISE",
        "CDC_TARGET",
        "CDC_TIMINGS_DIR",  # make test's timings (.ci/timings.py)
    }
)


class StackError(CdcError):
    """The local stack cannot be installed, started, reached or provisioned."""


class Target(str, Enum):
    LOCAL = "local"
    LOCALSTACK = "localstack"
    AWS = "aws"


class OpenSearchAuth(str, Enum):
    NONE = "none"
    BASIC = "basic"  # HTTP basic auth (the security plugin's internal users), https only
    SIGV4 = "sigv4"  # AWS SigV4 with boto3's credentials (Amazon OpenSearch Service `es`, Serverless `aoss`)


@dataclass(frozen=True, slots=True)
class OpenSearchSecurity:
    """How the OpenSearch client authenticates and verifies the server (CDC_OPENSEARCH_*).
    The password is kept out of repr() and str()."""

    auth: OpenSearchAuth = OpenSearchAuth.NONE
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    verify_certs: bool = True  # https only
    ca_certs: Path | None = None  # a PEM bundle instead of the system's CAs (https only)
    region: str | None = None  # sigv4
    service: str = "es"  # sigv4: es (OpenSearch Service) or aoss (OpenSearch Serverless)

    @classmethod
    def from_env(cls, env: Mapping[str, str], url: str | None) -> OpenSearchSecurity:
        """Every bad combination fails here, naming the variable and the fix. ``url``: the
        OpenSearch URL when it is known (None on AWS without CDC_OPENSEARCH_URL)."""
        try:
            auth = OpenSearchAuth(env.get("CDC_OPENSEARCH_AUTH", "none") or "none")
        except ValueError:
            raise StackError(
                f"CDC_OPENSEARCH_AUTH={env['CDC_OPENSEARCH_AUTH']!r}: expected one of {[a.value for a in OpenSearchAuth]}"
            ) from None
        if url is not None and re.match(r"[a-z]+://[^/]*@", url):
            raise StackError(
                "CDC_OPENSEARCH_URL holds credentials (user:password@): they would show in logs and status; "
                "give them as CDC_OPENSEARCH_USERNAME and CDC_OPENSEARCH_PASSWORD(_FILE) with CDC_OPENSEARCH_AUTH=basic"
            )
        https = url is None or url.lower().startswith("https://")
        username = env.get("CDC_OPENSEARCH_USERNAME") or None
        password = _password(env)
        if auth is OpenSearchAuth.BASIC:
            if not username or password is None:
                raise StackError(
                    "CDC_OPENSEARCH_AUTH=basic needs CDC_OPENSEARCH_USERNAME and CDC_OPENSEARCH_PASSWORD "
                    "(or CDC_OPENSEARCH_PASSWORD_FILE)"
                )
            if not https:
                raise StackError(
                    f"CDC_OPENSEARCH_AUTH=basic over {url}: basic auth would send the password in clear; "
                    "use an https:// CDC_OPENSEARCH_URL"
                )
        elif username or password is not None:
            raise StackError(
                f"CDC_OPENSEARCH_USERNAME / CDC_OPENSEARCH_PASSWORD(_FILE) are set but CDC_OPENSEARCH_AUTH={auth.value}: "
                "set CDC_OPENSEARCH_AUTH=basic, or unset them"
            )
        region = env.get("CDC_OPENSEARCH_REGION") or env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or None
        service = env.get("CDC_OPENSEARCH_SERVICE", "es")
        if service not in ("es", "aoss"):
            raise StackError(
                f"CDC_OPENSEARCH_SERVICE={service!r}: expected es (OpenSearch Service) or aoss (Serverless)"
            )
        if auth is OpenSearchAuth.SIGV4 and not region:
            raise StackError(
                "CDC_OPENSEARCH_AUTH=sigv4 needs the domain's region: set CDC_OPENSEARCH_REGION (or AWS_REGION)"
            )
        verify_raw = env.get("CDC_OPENSEARCH_VERIFY_CERTS", "true").lower()
        if verify_raw not in ("true", "false", "1", "0"):
            raise StackError(f"CDC_OPENSEARCH_VERIFY_CERTS={verify_raw!r}: expected true or false")
        verify_certs = verify_raw in ("true", "1")
        ca_raw = env.get("CDC_OPENSEARCH_CA_CERTS") or None
        ca_certs = Path(ca_raw).expanduser().resolve() if ca_raw else None
        if not https and (ca_certs or not verify_certs):
            raise StackError(
                f"CDC_OPENSEARCH_CA_CERTS / CDC_OPENSEARCH_VERIFY_CERTS apply to https only, and {url} is http: "
                "use an https:// CDC_OPENSEARCH_URL, or unset them"
            )
        if ca_certs and not verify_certs:
            raise StackError(
                "CDC_OPENSEARCH_CA_CERTS is set but CDC_OPENSEARCH_VERIFY_CERTS=false: "
                "keep verification on (unset CDC_OPENSEARCH_VERIFY_CERTS) to use the CA bundle"
            )
        if ca_certs and not ca_certs.is_file():
            raise StackError(f"CDC_OPENSEARCH_CA_CERTS={ca_raw}: no such file (a PEM bundle of the CAs to trust)")
        return cls(
            auth=auth,
            username=username,
            password=password,
            verify_certs=verify_certs,
            ca_certs=ca_certs,
            region=region if auth is OpenSearchAuth.SIGV4 else None,
            service=service,
        )


def _password(env: Mapping[str, str]) -> str | None:
    """CDC_OPENSEARCH_PASSWORD, or the first line of CDC_OPENSEARCH_PASSWORD_FILE (not both)."""
    password, path = env.get("CDC_OPENSEARCH_PASSWORD"), env.get("CDC_OPENSEARCH_PASSWORD_FILE")
    if password is not None and path:
        raise StackError("CDC_OPENSEARCH_PASSWORD and CDC_OPENSEARCH_PASSWORD_FILE are both set: keep one")
    if not path:
        return password
    try:
        lines = Path(path).expanduser().read_text().splitlines()
    except OSError as exc:
        raise StackError(f"CDC_OPENSEARCH_PASSWORD_FILE={path}: cannot read it ({exc.strerror})") from None
    return lines[0] if lines else ""


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
    localstack_mode: str  # auto | external | docker | host (CDC_LOCALSTACK_MODE; infra/local/localstack.py)
    opensearch_url_override: str | None
    health_timeout_s: float
    opensearch_heap: str
    kinesis_persist_interval: str
    opensearch_security: OpenSearchSecurity = OpenSearchSecurity()
    webhook_port: int = 8090

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> StackConfig:
        for name in sorted(env):
            if name.startswith("CDC_") and name not in VARIABLES:
                raise StackError(
                    f"{name} is not a variable of this project: {closest(name, VARIABLES)}"
                    "unset it (the variables: docs/configuration.md, Environment)"
                )

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
        default_state = (
            REPO_ROOT
            / {Target.LOCAL: ".state", Target.LOCALSTACK: ".state-localstack", Target.AWS: ".state-aws"}[target]
        )
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
        opensearch_url_override = env.get("CDC_OPENSEARCH_URL") or None
        if opensearch_url_override:
            opensearch_url: str | None = opensearch_url_override
        else:
            opensearch_url = (
                None if target is Target.AWS else f"http://{env.get('CDC_BIND_HOST', '127.0.0.1')}:{opensearch_port}"
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
            opensearch_url_override=opensearch_url_override,
            health_timeout_s=float(env.get("CDC_HEALTH_TIMEOUT", "90")),
            opensearch_heap=env.get("CDC_OPENSEARCH_HEAP", "512m"),
            # kinesis-mock rewrites all its data at every interval (CPU grows with retained
            # records); it also writes on SIGTERM. A SIGKILL loses what it acknowledged since
            # its last save; the relay's position and the consumers' checkpoints only move past
            # records it saved (services/kinesis_mock.py).
            kinesis_persist_interval=env.get("CDC_KINESIS_PERSIST_INTERVAL", "10s"),
            opensearch_security=OpenSearchSecurity.from_env(env, opensearch_url),
            webhook_port=port("CDC_WEBHOOK_PORT", 8090),
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
        queued behind them until it timed out (docs/decisions.md). Elsewhere: DynamoDB itself."""
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
