"""What operations changed about an app, kept under the state folder across `make down` / `up`.

`.state/apps/<package>/overrides.json`: ``workers``, how many worker processes the local
scheduler (`make up`, the stack supervisor) runs (`cdc scale`); absent: ``app.workers`` of its
app.toml. `make clean` removes the state folder, so the app.toml value applies again. What the
workers themselves must know at start (a replay's start) is not here but in the target's
DynamoDB (`consumers.runtime.control`); on ECS the service's desired count is the count.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

__all__ = ["Overrides", "load_overrides", "save_overrides"]


@dataclass(frozen=True, slots=True)
class Overrides:
    workers: int | None = None


def _path(state_dir: Path, package: str) -> Path:
    return state_dir / "apps" / package / "overrides.json"


def load_overrides(state_dir: Path, package: str) -> Overrides:
    try:
        raw = json.loads(_path(state_dir, package).read_text())
    except FileNotFoundError:
        return Overrides()
    return Overrides(workers=raw.get("workers"))


def save_overrides(state_dir: Path, package: str, overrides: Overrides) -> None:
    path = _path(state_dir, package)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({k: v for k, v in asdict(overrides).items() if v is not None}))
    os.replace(tmp, path)
