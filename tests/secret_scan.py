"""Find secrets in files: the local fake AWS secret key, the OpenSearch password, wherever a
log, a state file or a generated KCL `.properties` might have copied them.

Used by tests/integration/test_secrets_not_logged.py on the session stack's folders, and tested
on planted secrets in tests/unit/test_secret_scan.py (so a pass means something).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from services.clients import LOCAL_SECRET_ACCESS_KEY
from services.config import StackConfig

__all__ = ["Leak", "files_to_scan", "find_secrets", "secrets_of"]

_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class Leak:
    path: Path
    offset: int  # of the first occurrence, in bytes
    secret_name: str  # what leaked, never the secret itself

    def __str__(self) -> str:
        return f"{self.path}: {self.secret_name} at byte {self.offset}"


def secrets_of(stack: StackConfig) -> dict[str, str]:
    """name -> value of every secret the stack's processes hold: the emulators' fake secret
    key, and the OpenSearch password when one is configured."""
    secrets = {"the local fake AWS secret key (services.clients.LOCAL_SECRET_ACCESS_KEY)": LOCAL_SECRET_ACCESS_KEY}
    if stack.opensearch_security.password:
        secrets["the OpenSearch password (CDC_OPENSEARCH_PASSWORD)"] = stack.opensearch_security.password
    return secrets


def files_to_scan(stack: StackConfig) -> list[Path]:
    """Every file of the log folder, and every file of the state folder but the services'
    databases (``data/``: the stored records, where no process writes its settings): PID
    files, relay positions, KCL .properties, overrides, stats, lease backups, logs."""
    found = {p for p in stack.log_dir.rglob("*") if p.is_file()} if stack.log_dir.is_dir() else set()
    if stack.state_dir.is_dir():
        found |= {p for p in stack.state_dir.rglob("*") if p.is_file() and not p.is_relative_to(stack.data_dir)}
    return sorted(found)


def _occurrence(path: Path, needle: bytes) -> int | None:
    """Offset of the first occurrence of ``needle`` in the file, read in chunks (logs are big)."""
    overlap, offset, tail = len(needle) - 1, 0, b""
    try:
        with path.open("rb") as handle:
            while chunk := handle.read(_CHUNK):
                window = tail + chunk
                at = window.find(needle)
                if at >= 0:
                    return offset - len(tail) + at
                tail = window[-overlap:] if overlap else b""
                offset += len(chunk)
    except (FileNotFoundError, IsADirectoryError):  # a log rotated or a PID file removed meanwhile
        return None
    return None


def find_secrets(paths: Iterable[Path], secrets: dict[str, str]) -> Iterator[Leak]:
    """Each file that holds one of ``secrets`` (as written, UTF-8), with the secret's name."""
    needles = {name: value.encode() for name, value in secrets.items() if value}
    for path in paths:
        for name, needle in needles.items():
            at = _occurrence(path, needle)
            if at is not None:
                yield Leak(path, at, name)
