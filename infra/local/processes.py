"""Background processes with PID files and logs under the state folder.

A PID file alone is not trusted: a process counts as ours only while it is alive and its
command line still carries the marker we started it with (PIDs get reused after a reboot).
"""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["ManagedProcess", "descendants", "running_commands"]


@dataclass(frozen=True, slots=True)
class ManagedProcess:
    name: str
    command: tuple[str, ...]
    marker: str  # a string that appears in the process's command line, and only in ours
    pid_file: Path
    log_file: Path
    cwd: Path | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    # more environment, worked out only when the process is started (e.g. a worker's secrets)
    env_at_start: Callable[[], Mapping[str, str]] | None = field(default=None, compare=False)
    # SIGTERM the whole process group, or only the leader (a supervisor that stops its
    # children gracefully itself); a SIGKILL always takes the whole group.
    term_group: bool = True

    def pid(self) -> int | None:
        """The PID if our process is running, else None (a stale PID file is removed)."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        if self.marker in _cmdline(pid) and not _is_zombie(pid):
            return pid
        self.pid_file.unlink(missing_ok=True)
        return None

    def start(self) -> int:
        """Start the process in its own session (so it survives the caller) unless it runs.
        Two starters at once (`make up` and the stack supervisor) start it once: the check and
        the start hold a lock beside the PID file."""
        self.pid_file.parent.mkdir(parents=True, exist_ok=True)
        with open(self.pid_file.with_suffix(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            running = self.pid()
            return running if running is not None else self._spawn()

    def _spawn(self) -> int:
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_file, "ab") as log:
            log.write(f"\n==== {time.strftime('%Y-%m-%dT%H:%M:%S%z')} starting {self.name}\n".encode())
            log.flush()
            proc = subprocess.Popen(
                self.command,
                cwd=self.cwd,
                env={**os.environ, **self.env, **(self.env_at_start() if self.env_at_start else {})},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.pid_file.write_text(f"{proc.pid}\n")
        return proc.pid

    def exited(self) -> bool:
        return self.pid() is None

    def signal_stop(self) -> None:
        """Ask the process to stop (SIGTERM) without waiting."""
        pid = self.pid()
        if pid is not None:
            self._send(pid, signal.SIGTERM)

    def stop(self, timeout_s: float = 20.0, sig: int = signal.SIGTERM) -> bool:
        """Signal the process group, wait, then SIGKILL. Returns True if something was stopped."""
        pid = self.pid()
        if pid is None:
            return False
        self._send(pid, sig)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and self.pid() is not None:
            time.sleep(0.1)
        if self.pid() is not None:
            _signal_group(pid, signal.SIGKILL)
            while self.pid() is not None:
                time.sleep(0.05)
        self.pid_file.unlink(missing_ok=True)
        return True

    def _send(self, pid: int, sig: int) -> None:
        if self.term_group or sig == signal.SIGKILL:
            _signal_group(pid, sig)
        else:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass

    def kill(self) -> bool:
        """SIGKILL at once, as a crash would (used by the chaos tests)."""
        return self.stop(timeout_s=0, sig=signal.SIGKILL)

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log yet)"


def running_commands() -> list[tuple[int, str]]:
    """(PID, command line) of every live process this user can see."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and not _is_zombie(int(entry.name)):
            try:
                raw = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if raw:
                found.append((int(entry.name), raw.replace(b"\0", b" ").decode(errors="replace").strip()))
    return found


def descendants(pid: int) -> set[int]:
    """The process and every process below it."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        current = todo.pop()
        found.add(current)
        todo.extend(children.get(current, ()))
    return found


def _cmdline(pid: int) -> str:
    """The process's command line; empty when it is gone.

    Right after a fork/exec the kernel may briefly report an empty command line for a live
    process, so an empty read of a live PID is retried for a moment.
    """
    for _ in range(20):
        try:
            raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return ""
        if raw:
            return raw.replace(b"\0", b" ").decode(errors="replace")
        time.sleep(0.025)
    return ""


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass
    except PermissionError:
        os.kill(pid, sig)


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    if stat.rsplit(")", 1)[-1].split()[0] != "Z":
        return False
    try:  # reap it if it is our child (tests start processes from this interpreter)
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
    return True
