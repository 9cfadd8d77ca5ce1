"""Checks run before installing or starting anything: tools on PATH and free ports.

`make install` runs it right after creating the venv, before npm and Maven are used; `make up`
runs it again before starting processes. Each failure names the missing tool or the taken
port, what needs it, and what to do.
"""

from __future__ import annotations

import errno
import random
import re
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass

from services.config import OPENSEARCH_MAX_HTTP_PORT, StackError

__all__ = ["PreflightError", "Tool", "TOOLS", "check_tools", "check_port_free", "free_opensearch_port", "free_port"]


class PreflightError(StackError):
    """A tool is missing or too old, or a port is taken: a message for whoever runs `make up`."""


@dataclass(frozen=True, slots=True)
class Tool:
    command: str
    needed_by: str
    min_major: int | None = None
    version_args: tuple[str, ...] = ()


TOOLS = (
    Tool("java", "DynamoDB Local, OpenSearch and the KCL MultiLangDaemon", 17, ("-version",)),
    Tool("javac", "the DynamoDB Local loopback launcher and the event-ruler test oracle (built at install)"),
    Tool("node", "the Kinesis emulator (kinesis-mock)", 18, ("--version",)),
    Tool("npm", "installing the Kinesis emulator and DynamoDB Local"),
    Tool("mvn", "downloading the OpenSearch node and event-ruler jars from Maven Central"),
    Tool("patch", "applying infra/local/localstack/patches to LocalStack (host mode) at install"),
)


def _major(output: str) -> int | None:
    match = re.search(r'(?:version "|^v)(\d+)', output, re.MULTILINE)
    return int(match.group(1)) if match else None


def check_tools(names: tuple[str, ...] | None = None) -> None:
    for tool in TOOLS:
        if names is not None and tool.command not in names:
            continue
        path = shutil.which(tool.command)
        if path is None:
            raise PreflightError(
                f"{tool.command} not found on PATH: it is needed by {tool.needed_by}. "
                f"Install it (Java 17+ JDK, Node.js 18+, Maven) and run `make up` again."
            )
        if tool.min_major is None:
            continue
        proc = subprocess.run([path, *tool.version_args], capture_output=True, text=True, timeout=30)
        major = _major(proc.stdout + proc.stderr)
        if major is None or major < tool.min_major:
            raise PreflightError(
                f"{tool.command} at {path} is version {major or 'unknown'}; "
                f"{tool.needed_by} need {tool.command} {tool.min_major} or newer."
            )


def check_port_free(host: str, port: int, component: str, variable: str) -> None:
    """Fail when something we did not start already listens on the port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    # as the servers themselves do: connections in TIME_WAIT from a previous run do not count
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        raise PreflightError(
            f"port {port} on {host}, needed by {component}, is already in use by another process. "
            f"Stop that process (`ss -ltnp 'sport = :{port}'` shows it) or choose another port "
            f"with {variable}=<port>."
        ) from None
    finally:
        sock.close()


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on right now (for private stacks in benchmarks and tests)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def free_opensearch_port(host: str = "127.0.0.1") -> int:
    """A free port the local OpenSearch node can serve HTTP on (9201-9299; see StackConfig)."""
    for candidate in random.sample(range(9201, OPENSEARCH_MAX_HTTP_PORT + 1), OPENSEARCH_MAX_HTTP_PORT - 9200):
        with socket.socket() as sock:
            try:
                sock.bind((host, candidate))
            except OSError:
                continue
            return candidate
    raise PreflightError(f"no free port in 9201-{OPENSEARCH_MAX_HTTP_PORT} for a private OpenSearch node")


if __name__ == "__main__":
    try:
        check_tools(tuple(sys.argv[1:]) or None)
    except PreflightError as exc:
        print(f"make: {exc}", file=sys.stderr)
        sys.exit(1)
