"""What `make chaos` reports per fault (`FaultResult`), and the table it prints of them."""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["FaultResult", "table"]


@dataclass(slots=True)
class FaultResult:
    fault: str
    rounds: int = 0
    written: int = 0
    applied: int = 0
    stale: int = 0
    dead_lettered: int = 0
    lost: int = 0
    regressions: int = 0
    recover_s: list[float] = field(default_factory=list)
    unrecovered: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.lost or self.regressions or self.unrecovered or self.dead_lettered)

    def row(self) -> dict[str, Any]:
        recover = sorted(self.recover_s)
        return {
            **{k: v for k, v in asdict(self).items() if k != "recover_s"},
            "recover_p50_s": round(statistics.median(recover), 1) if recover else None,
            "recover_max_s": round(recover[-1], 1) if recover else None,
            "ok": self.ok,
        }


def table(results: list[FaultResult]) -> str:
    head = (
        f"{'fault':<22} {'rounds':>6} {'written':>8} {'applied':>8} {'stale':>6} {'dead-letter':>11} "
        f"{'lost':>5} {'regressions':>11} {'recover p50':>11} {'max':>6}"
    )
    lines = [head, "-" * len(head)]
    for result in results:
        row = result.row()
        p50, top = row["recover_p50_s"], row["recover_max_s"]
        lines.append(
            f"{result.fault:<22} {result.rounds:>6} {result.written:>8} {result.applied:>8} {result.stale:>6} "
            f"{result.dead_lettered:>11} {result.lost:>5} {result.regressions:>11} "
            f"{'-' if p50 is None else f'{p50:.1f}s':>11} {'-' if top is None else f'{top:.1f}s':>6}"
            + (f"  NOT RECOVERED x{result.unrecovered}" if result.unrecovered else "")
        )
    return "\n".join(lines)
