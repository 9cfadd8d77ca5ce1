"""The stack supervisor: one process that starts again, with back-off, every component of the
local stack (or of LocalStack in host mode) whose process is gone.

`make up` starts it last and `make down` stops it first. Each second it looks at what should
run: every server this project runs (DynamoDB Local, kinesis-mock, OpenSearch, LocalStack in
host mode, the relay) and every worker of every app that is not held. A process that is gone
is started again at once the first time, then after 2, 4, 8, ... up to 30 s while it keeps
dying (jittered); once it stayed up for a minute its back-off starts over.

It restarts only processes that are gone. A paused process (SIGSTOP) or a slow one is left
alone: it is not dead, and killing a process that holds data (kinesis-mock between snapshots)
loses more than waiting does. Each worker process already supervises its own KCL JVM and the
relay its own loops; this covers the processes themselves.

An app's workers are held while an operation stops them on purpose (`cdc stop`, `scale`,
`replay`): `hold` marks the app in the state folder, starting the app (`cdc start`, `make up`)
releases it. Workers numbered above the app's count are never started. Every restart is a JSON
line in the supervisor's log (``restart``: component, attempt, how long it was down).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import signal
import sys
import threading
import time
from dataclasses import dataclass

from base import retry
from infra.local.components import Component, components
from infra.local.stack import held, workers
from producer_config import load_pipeline
from services.config import StackConfig

__all__ = ["Backoff", "main", "run", "wanted"]

log = logging.getLogger("cdc.supervisor")

#: the wait before a restart after ``restarts`` in a row (0, 1, 2, ...): 0, 2, 4, 8, 16, then 30 s
#: (before the supervisor's own jitter of +-20 %)
_RESTART_BACKOFF = retry.Backoff(first_s=2.0, cap_s=30.0)
#: a process that stayed up this long starts its back-off over
_STABLE_S = 60.0


def wanted(stack: StackConfig) -> tuple[Component, ...]:
    """What should run now: the servers ours to run, and the workers of every app not held."""
    pipeline = load_pipeline()
    servers = tuple(c for c in components(stack, pipeline) if c.external is None)
    return servers + tuple(w for w in workers(stack, pipeline) if not held(stack, _package(w.process.name)))


def _package(worker_name: str) -> str:
    return worker_name.removeprefix("worker-").rsplit("-", 1)[0]


@dataclass(slots=True)
class Backoff:
    """When one component may be started again: `restarts` in a row, the last at `started`."""

    restarts: int = 0
    started: float = 0.0
    down_since: float | None = None

    def due(self, now: float, rng: random.Random) -> bool:
        if self.restarts and now - self.started >= _STABLE_S:
            self.restarts = 0  # it ran long enough since the last restart: begin again
        delay = _RESTART_BACKOFF.ceiling(self.restarts)
        return now - self.started >= delay * rng.uniform(0.8, 1.2)


def run(stack: StackConfig, stop: threading.Event, tick_s: float = 1.0, rng: random.Random | None = None) -> None:
    rng = rng or random.Random()
    state: dict[str, Backoff] = {}
    while not stop.wait(tick_s):
        try:
            components_now = wanted(stack)
        except Exception as exc:  # noqa: BLE001 - a configuration being edited: try again next tick
            log.error(json.dumps({"event": "config_error", "error": f"{type(exc).__name__}: {exc}"}))
            continue
        now = time.monotonic()
        for component in components_now:
            process = component.process
            backoff = state.setdefault(process.name, Backoff())
            if process.pid() is not None:
                backoff.down_since = None
                continue
            if backoff.down_since is None:
                backoff.down_since = now
            if stop.is_set() or not backoff.due(now, rng):
                continue
            backoff.restarts += 1
            backoff.started = now
            pid: int | None = None
            error: str | None = None
            try:
                component.prepare()
                pid = process.start()
            except Exception as exc:  # noqa: BLE001 - reported, tried again after the back-off
                error = f"{type(exc).__name__}: {exc}"
            log.warning(
                json.dumps(
                    {
                        "event": "restart",
                        "component": process.name,
                        "attempt": backoff.restarts,
                        "down_s": round(now - backoff.down_since, 1),
                        "pid": pid,
                        **({"error": error} if error else {}),
                    }
                )
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--state-dir", help="state folder (default: CDC_STATE_DIR or .state)")
    args = parser.parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(message)s")
    env = dict(os.environ, **({"CDC_STATE_DIR": args.state_dir} if args.state_dir else {}))
    stack = StackConfig.from_env(env)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    log.info(json.dumps({"event": "supervising", "state_dir": str(stack.state_dir)}))
    run(stack, stop)
    log.info(json.dumps({"event": "stopped"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
