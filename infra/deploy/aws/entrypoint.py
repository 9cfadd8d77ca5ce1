"""The worker container's entrypoint on ECS: one supervised MultiLangDaemon of ``$CDC_APP``.

    python -m infra.deploy.aws.entrypoint          # CMD of infra/deploy/aws/worker.Dockerfile

Every task of an app's service runs the same command, but each KCL worker needs a workerId of
its own (two workers with one id would take each other's leases for their own). A Fargate task
in ``awsvpc`` mode has its own network interface: its private IPv4 address, as a number, is
unique among the tasks running at one time, and a task that replaces a stopped one on the same
address takes over an id nobody holds any more. The address comes from the task metadata
endpoint ECS gives every container (``$ECS_CONTAINER_METADATA_URI_V4``: ``Networks[0].
IPv4Addresses[0]``), else from the host name.
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import sys
import urllib.request
from collections.abc import Mapping

__all__ = ["main", "task_address", "worker_number"]


def worker_number(address: str) -> int:
    """The worker number (``--worker``) of the task whose private IPv4 address is ``address``."""
    number = int(ipaddress.IPv4Address(address))
    if number == 0 or ipaddress.IPv4Address(address).is_loopback:
        raise ValueError(f"{address} is not the task's own address (awsvpc network mode expected)")
    return number


def task_address(env: Mapping[str, str] = os.environ) -> str:
    """The task's private IPv4 address: from the container metadata endpoint (ECS agent, Fargate
    platform 1.4+), else the address the host name resolves to."""
    uri = env.get("ECS_CONTAINER_METADATA_URI_V4")
    if uri:
        with urllib.request.urlopen(uri, timeout=5) as answer:
            networks = json.load(answer).get("Networks") or [{}]
        addresses = networks[0].get("IPv4Addresses") or []
        if addresses:
            return str(addresses[0])
    return socket.gethostbyname(socket.gethostname())


def main() -> int:
    from consumers.runtime import daemon

    app = os.environ.get("CDC_APP")
    if not app:
        print("CDC_APP (the app's package under consumers/) is not set", file=sys.stderr)
        return 2
    return daemon.main(["--app", app, "--worker", str(worker_number(task_address()))])


if __name__ == "__main__":
    sys.exit(main())
