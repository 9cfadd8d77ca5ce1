"""A client of ``EventRulerOracle.java``: aws/event-ruler (the engine behind EventBridge content
filtering, whose grammar Lambda event filtering uses) in one JVM, asked one line at a time.

``make install`` fetches event-ruler with Maven and compiles the oracle into
``$CDC_DEPS_DIR/event-ruler`` (see ``tests/conformance/pom.xml``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import orjson

__all__ = ["EventRuler", "OracleMissing"]

_DEPS = Path(os.environ.get("CDC_DEPS_DIR", Path(__file__).resolve().parents[2] / ".deps"))
HOME = _DEPS / "event-ruler"


class OracleMissing(RuntimeError):
    """The oracle is not installed (``make install`` builds it)."""


class EventRuler:
    """``ask(patterns, event)`` -> True / False, or the error text when event-ruler rejects a
    pattern. Patterns and the event are JSON text, passed to event-ruler untouched."""

    def __init__(self, home: Path = HOME) -> None:
        classes, jars = home / "classes", home / "jars"
        java = shutil.which("java")
        if java is None or not (classes / "EventRulerOracle.class").is_file() or not jars.is_dir():
            raise OracleMissing(
                f"the event-ruler oracle is not built in {home} (or java is missing): run `make install`"
            )
        self._process = subprocess.Popen(
            [java, "-Xss8m", "-cp", f"{classes}{os.pathsep}{jars}/*", "EventRulerOracle"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            encoding="utf-8",
        )

    def ask(self, patterns: list[str], event: str) -> bool | str:
        assert self._process.stdin is not None and self._process.stdout is not None
        self._process.stdin.write(orjson.dumps({"patterns": patterns, "event": event}).decode() + "\n")
        self._process.stdin.flush()
        line = self._process.stdout.readline()
        if not line:
            raise RuntimeError(f"the event-ruler oracle exited with {self._process.wait()}")
        answer = orjson.loads(line)
        return answer["match"] if "match" in answer else answer["error"]

    def close(self) -> None:
        if self._process.stdin is not None:
            self._process.stdin.close()
        self._process.wait(timeout=10)
