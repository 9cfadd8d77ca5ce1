"""What every benchmark reports: figures, each beside the ceiling measured in the same run.

A benchmark module exposes ``measure(quick: bool) -> Section``; ``bench.report`` runs them,
prints the summary, and writes ``bench-results/<timestamp>/report.md`` with the chart.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Figure", "Section", "Series"]


@dataclass(frozen=True)
class Figure:
    name: str  # e.g. "app-user-management through the MultiLangDaemon"
    value: float
    unit: str  # e.g. "records/s", "s"
    ceiling: float | None = None  # measured in the same run; None when the figure has none
    ceiling_name: str = ""  # what the ceiling is, e.g. "no-op kclpy processor, same records"
    target: str = ""  # the target in words, e.g. ">= 80% of min(no-op, raw sink)"
    met: bool | None = None  # target met; None when there is no target
    note: str = ""

    @property
    def ratio(self) -> float | None:
        return self.value / self.ceiling if self.ceiling else None


@dataclass(frozen=True)
class Series:
    """Points for the chart, e.g. put rate (y) against records stored (x), one line per label."""

    title: str
    x_label: str
    y_label: str
    lines: dict[str, list[tuple[float, float]]]


@dataclass(frozen=True)
class Section:
    title: str
    figures: list[Figure] = field(default_factory=list)
    series: list[Series] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what limits the figures, how they were taken
