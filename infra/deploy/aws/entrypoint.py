"""The worker container's entrypoint on ECS: one supervised MultiLangDaemon of ``$CDC_APP``.

    python -m infra.deploy.aws.entrypoint          # CMD of infra/deploy/aws/worker.Dockerfile

Every task of an app's service runs the same command, but each KCL worker needs a workerId of
its own (two workers with one id would take each other's leases for their own). A Fargate task
in ``awsvpc`` mode has its own network interface: its private IPv4 address, as a number, is
unique among the tasks running at one time, and a task that replaces a stopped one on the same
address takes over an id nobody holds any more.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import sys

__all__ = ["main", "worker_number"]


def worker_number(address: str) -> int:
    """The worker number (``--worker``) of the task whose private IPv4 address is ``address``."""
    number = int(ipaddress.IPv4Address(address))
    if number == 0 or ipaddress.IPv4Address(address).is_loopback:
        raise ValueError(f"{address} is not the task's own address (awsvpc network mode expected)")
    return number


def main() -> int:
    from consumers.runtime import daemon

    app = os.environ.get("CDC_APP")
    if not app:
        print("CDC_APP (the app's package under consumers/) is not set", file=sys.stderr)
        return 2
    return daemon.main(["--app", app, "--worker", str(worker_number(socket.gethostbyname(socket.gethostname())))])


if __name__ == "__main__":
    sys.exit(main())
