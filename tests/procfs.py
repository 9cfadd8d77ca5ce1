"""Processes and their listening sockets, read from /proc (Linux): the stack tests' check that
every server binds to the loopback interface."""

from __future__ import annotations

import os
from pathlib import Path

from infra.local.processes import descendants

__all__ = ["descendants", "listening", "loopback"]


def listening(pids: set[int]) -> list[tuple[int, str]]:
    """(pid, local address) of every listening TCP socket the processes hold."""
    addresses: dict[str, str] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A":  # LISTEN
                addresses[fields[9]] = address_of(fields[1])
    found = []
    for pid in pids:
        try:
            fds = list(Path(f"/proc/{pid}/fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            inode = target[len("socket:[") : -1] if target.startswith("socket:[") else None
            if inode in addresses:
                found.append((pid, addresses[inode]))
    return found


def address_of(hex_address: str) -> str:
    host, port = hex_address.split(":")
    raw = bytes.fromhex(host)
    if len(raw) == 4:
        return f"{'.'.join(str(b) for b in raw[::-1])}:{int(port, 16)}"
    words = [raw[i : i + 4][::-1] for i in range(0, 16, 4)]  # /proc/net/tcp6: 4 little-endian words
    ipv6 = b"".join(words)
    if ipv6[:12] == b"\0" * 10 + b"\xff\xff":
        return f"::ffff:{'.'.join(str(b) for b in ipv6[12:])}:{int(port, 16)}"
    return f"[{ipv6.hex()}]:{int(port, 16)}"


def loopback(address: str) -> bool:
    """``address`` (host:port as `listening` gives it) is 127.0.0.1, or that mapped into IPv6 (a JVM)."""
    return address.startswith(("127.0.0.1:", "::ffff:127.0.0.1:"))
