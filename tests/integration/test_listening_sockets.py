"""Every socket the running stack listens on is bound to the loopback interface: each process
the stack started (its PID files) and every process under it, read from /proc (Linux)."""

from __future__ import annotations

import ipaddress
import os
import socket
import struct
from pathlib import Path

import pytest

pytestmark = pytest.mark.stack

_LISTEN = "0A"


def _listening() -> dict[str, tuple[str, int]]:
    """Listening TCP sockets of this machine: inode -> (address, port)."""
    found = {}
    for name, family in (("tcp", socket.AF_INET), ("tcp6", socket.AF_INET6)):
        path = Path("/proc/net") / name
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state != _LISTEN:
                continue
            address_hex, port_hex = local.split(":")
            raw = bytes.fromhex(address_hex)
            # /proc writes each 32-bit word in host order
            packed = b"".join(struct.pack("=I", int.from_bytes(raw[i : i + 4], "big")) for i in range(0, len(raw), 4))
            found[inode] = (socket.inet_ntop(family, packed), int(port_hex, 16))
    return found


def _loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    mapped = getattr(ip, "ipv4_mapped", None)  # ::ffff:127.0.0.1, a JVM's IPv4 socket
    return ip.is_loopback or (mapped is not None and mapped.is_loopback)


def _tree(root: int) -> set[int]:
    """``root`` and every process under it."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    tree, todo = set(), [root]
    while todo:
        pid = todo.pop()
        tree.add(pid)
        todo.extend(children.get(pid, ()))
    return tree


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    except OSError:
        pass
    return inodes


def test_every_socket_the_stack_listens_on_is_bound_to_the_loopback_interface(stack):
    listening = _listening()
    roots = {path.stem: int(path.read_text()) for path in (stack.state_dir / "pids").glob("*.pid")}
    assert {"dynamodb", "dynamodb-leases", "kinesis", "opensearch", "relay"} <= set(roots), roots
    bound: dict[str, list[tuple[str, int]]] = {}
    for name, root in roots.items():
        for pid in _tree(root):
            bound.setdefault(name, []).extend(listening[i] for i in _socket_inodes(pid) if i in listening)
    print(f"\nlistening: {bound}")
    for name in ("dynamodb", "dynamodb-leases", "kinesis", "opensearch"):
        assert bound[name], f"{name} listens on nothing: is its PID file right?"
    exposed = {name: [a for a in addresses if not _loopback(a[0])] for name, addresses in bound.items()}
    assert not any(exposed.values()), exposed
