"""Runs every benchmark, prints the summary and writes the report with its charts.

    python -m bench.report [--quick] [--only core,kinesis,...] [--out bench-results]

Each module of ``MODULES`` exposes ``measure(quick: bool) -> bench.figures.Section``; they run
in that order (a module that does not exist yet is skipped with a note). The summary table
(figure, value, ceiling, ratio, target met) goes to stdout; ``<out>/<UTC timestamp>/report.md``
holds the machine, the exact command, each section's table and notes, and links one PNG chart
per Series. Exit status 0 unless a benchmark raised (a missed target is not an error).
"""

from __future__ import annotations

import argparse
import importlib
import math
import os
import platform
import re
import shlex
import subprocess
import sys
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bench.figures import Figure, Section, Series

__all__ = [
    "MODULES",
    "Outcome",
    "chart_name",
    "format_number",
    "machine_info",
    "main",
    "print_section",
    "render_markdown",
    "render_summary",
    "summary_rows",
]

MODULES = ("core", "kinesis", "relay", "apps", "latency", "notifications", "e2e")
SUMMARY_HEADER = ("figure", "value", "ceiling", "ratio", "target met")


@dataclass(frozen=True)
class Outcome:
    """What one module gave: its Section, or why there is none (skipped / raised)."""

    module: str
    section: Section | None = None
    seconds: float = 0.0
    skipped: str = ""  # why the module did not run (not importable yet, no measure())
    error: str = ""  # the traceback when measure() raised


# --- pure rendering (tests/unit/test_bench_report.py) ---------------------------------------


def format_number(value: float | None) -> str:
    """Readable at a glance: thousands separators for big values, 3 significant digits else."""
    if value is None:
        return "-"
    if math.isnan(value) or math.isinf(value):
        return "n/a"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if value == int(value):
        return f"{value:.0f}"
    return f"{value:.3g}"


def _met(figure: Figure) -> str:
    return "-" if figure.met is None else ("yes" if figure.met else "NO")


def summary_rows(outcomes: Sequence[Outcome]) -> list[tuple[str, ...]]:
    """One row per figure: (figure, value unit, ceiling, ratio, target met)."""
    rows: list[tuple[str, ...]] = []
    for outcome in outcomes:
        if outcome.section is None:
            continue
        for figure in outcome.section.figures:
            ceiling = "-"
            if figure.ceiling is not None:
                ceiling = f"{format_number(figure.ceiling)} {figure.unit}"
                if figure.ceiling_name:
                    ceiling += f" ({figure.ceiling_name})"
            ratio = "-" if figure.ratio is None else f"{figure.ratio:.2f}"
            met = _met(figure) if not figure.target else f"{_met(figure)} ({figure.target})"
            rows.append(
                (
                    f"{outcome.module}: {figure.name}",
                    f"{format_number(figure.value)} {figure.unit}",
                    ceiling,
                    ratio,
                    met,
                )
            )
    return rows


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=False)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows]
    head = "  ".join(cell.ljust(width) for cell, width in zip(header, widths, strict=True)).rstrip()
    return "\n".join([head, "  ".join("-" * width for width in widths), *lines])


def render_summary(outcomes: Sequence[Outcome]) -> str:
    """The plain-text summary printed to stdout."""
    parts = [_table(SUMMARY_HEADER, summary_rows(outcomes))]
    for outcome in outcomes:
        if outcome.skipped:
            parts.append(f"skipped {outcome.module}: {outcome.skipped}")
        if outcome.error:
            parts.append(f"FAILED {outcome.module}: {outcome.error.strip().splitlines()[-1]}")
    return "\n".join(parts) + "\n"


#: a Series line with more points than this is left to its chart in the text outputs
LISTED_POINTS = 25


def _points(points: Sequence[tuple[float, float]]) -> str:
    if len(points) > LISTED_POINTS:
        return f"{len(points)} points (see the chart)"
    return ", ".join(f"({format_number(x)}, {format_number(y)})" for x, y in points)


def print_section(section: Section, module: str = "") -> None:
    """A module's CLI output: its figures as the summary table, then its notes."""
    sys.stdout.write(f"{section.title}\n")
    sys.stdout.write(render_summary([Outcome(module or "bench", section=section)]))
    for series in section.series:
        for label, points in series.lines.items():
            sys.stdout.write(f"{series.title} - {label} ({series.x_label}, {series.y_label}): {_points(points)}\n")
    for note in section.notes:
        sys.stdout.write(f"note: {note}\n")


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_md_cell(cell) for cell in row) + " |" for row in rows]
    return lines


def chart_name(module: str, index: int, series: Series) -> str:
    """The PNG file name of a Series: module, position, and a slug of the title."""
    slug = re.sub(r"[^a-z0-9]+", "-", series.title.lower()).strip("-")[:60] or "chart"
    return f"{module}-{index + 1}-{slug}.png"


def render_markdown(
    outcomes: Sequence[Outcome],
    machine: dict[str, str],
    command: str,
    started: datetime,
    charts: dict[str, list[str]] | None = None,
) -> str:
    """report.md: the machine, the command, the summary, then per module its table, notes and
    chart links (``charts``: module -> PNG file names beside the report)."""
    charts = charts or {}
    lines = [
        f"# Benchmarks, {started.strftime('%Y-%m-%d %H:%M:%S')} UTC",
        "",
        f"Command: `{command}`",
        "",
        "## Machine",
        "",
        *_md_table(("", ""), [(key, value) for key, value in machine.items()]),
        "",
        "## Summary",
        "",
        *_md_table(SUMMARY_HEADER, summary_rows(outcomes)),
        "",
    ]
    for outcome in outcomes:
        section = outcome.section
        lines.append(f"## {section.title if section else outcome.module} (`bench.{outcome.module}`)")
        lines.append("")
        if outcome.skipped:
            lines += [f"Skipped: {outcome.skipped}", ""]
            continue
        if outcome.error:
            lines += ["Raised:", "", "```", outcome.error.rstrip(), "```", ""]
        if section is None:
            continue
        if section.figures:
            rows = [
                (
                    figure.name,
                    format_number(figure.value),
                    figure.unit,
                    format_number(figure.ceiling),
                    figure.ceiling_name or "-",
                    "-" if figure.ratio is None else f"{figure.ratio:.2f}",
                    figure.target or "-",
                    _met(figure),
                    figure.note,
                )
                for figure in section.figures
            ]
            header = ("figure", "value", "unit", "ceiling", "ceiling is", "ratio", "target", "met", "note")
            lines += [*_md_table(header, rows), ""]
        for series in section.series:
            if series.lines:
                lines.append(f"{series.title}:")
                lines.append("")
                for label, points in series.lines.items():
                    lines.append(f"- {label} ({series.x_label}, {series.y_label}): {_points(points)}")
                lines.append("")
        for note in section.notes:
            lines.append(f"- {note}")
        if section.notes:
            lines.append("")
        for name in charts.get(outcome.module, []):
            lines += [f"![{name}]({name})", ""]
        lines += [f"({outcome.seconds:.0f} s)", ""]
    return "\n".join(lines)


# --- the machine, the charts, the run -------------------------------------------------------


def _first_line(command: Sequence[str]) -> str:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"unavailable ({error})"
    text = (done.stdout or done.stderr).strip()
    return text.splitlines()[0] if text else "unavailable"


def machine_info() -> dict[str, str]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram = "unknown"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                break
    except OSError:
        pass
    return {
        "CPUs": f"{os.cpu_count()} x {model}",
        "RAM": ram,
        "OS": platform.platform(),
        "Python": sys.version.split()[0],
        "node": _first_line(["node", "--version"]),
        "java": _first_line(["java", "-version"]),
        "load average (1/5/15 min) at start": " / ".join(f"{v:.2f}" for v in os.getloadavg()),
    }


def write_charts(outcomes: Sequence[Outcome], folder: Path) -> dict[str, list[str]]:
    """One PNG per Series (matplotlib, Agg); module -> file names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written: dict[str, list[str]] = {}
    for outcome in outcomes:
        if outcome.section is None:
            continue
        for index, series in enumerate(outcome.section.series):
            if not any(series.lines.values()):
                continue
            fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
            for label, points in series.lines.items():
                if points:
                    xs, ys = zip(*points, strict=True)
                    ax.plot(xs, ys, marker="o", markersize=3, label=label)
            ax.set_title(series.title)
            ax.set_xlabel(series.x_label)
            ax.set_ylabel(series.y_label)
            ax.grid(True, alpha=0.3)
            ax.legend()
            fig.tight_layout()
            name = chart_name(outcome.module, index, series)
            fig.savefig(folder / name)
            plt.close(fig)
            written.setdefault(outcome.module, []).append(name)
    return written


def run_module(name: str, quick: bool) -> Outcome:
    try:
        module = importlib.import_module(f"bench.{name}")
    except ModuleNotFoundError as error:
        if error.name == f"bench.{name}":
            return Outcome(name, skipped="not importable yet (no bench/" + name + ".py)")
        raise
    measure = getattr(module, "measure", None)
    if measure is None:
        return Outcome(name, skipped=f"bench.{name} has no measure(quick) yet")
    started = time.monotonic()
    try:
        section = measure(quick)
    except Exception:  # noqa: BLE001 - one benchmark's failure is reported, the others still run
        return Outcome(name, seconds=time.monotonic() - started, error=traceback.format_exc())
    return Outcome(name, section=section, seconds=time.monotonic() - started)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.report", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller runs (minutes, not tens of minutes)")
    parser.add_argument("--only", default="", help=f"comma-separated modules, of: {', '.join(MODULES)}")
    parser.add_argument("--out", default="bench-results", help="folder of the reports (default: bench-results)")
    args = parser.parse_args(argv)
    chosen = [name.strip() for name in args.only.split(",") if name.strip()] or list(MODULES)
    unknown = [name for name in chosen if name not in MODULES]
    if unknown:
        parser.error(f"--only: unknown module(s) {', '.join(unknown)}; choose from {', '.join(MODULES)}")
    command = shlex.join(
        [Path(sys.executable).name, "-m", "bench.report", *(argv if argv is not None else sys.argv[1:])]
    )
    started = datetime.now(UTC)
    folder = Path(args.out) / started.strftime("%Y%m%dT%H%M%SZ")
    folder.mkdir(parents=True, exist_ok=True)
    machine = machine_info()
    outcomes: list[Outcome] = []
    charts: dict[str, list[str]] = {}
    report = folder / "report.md"
    for name in (name for name in MODULES if name in chosen):
        print(f"== bench.{name}{' (quick)' if args.quick else ''}", file=sys.stderr, flush=True)
        outcome = run_module(name, args.quick)
        if outcome.skipped:
            print(f"   skipped: {outcome.skipped}", file=sys.stderr, flush=True)
        elif outcome.error:
            print(outcome.error, file=sys.stderr, flush=True)
        else:
            print(f"   done in {outcome.seconds:.0f} s", file=sys.stderr, flush=True)
        outcomes.append(outcome)
        # after each module, so that what was measured survives an interrupted run
        charts.update(write_charts([outcome], folder))
        report.write_text(render_markdown(outcomes, machine, command, started, charts))
    report.write_text(render_markdown(outcomes, machine, command, started, charts))
    sys.stdout.write(render_summary(outcomes))
    sys.stdout.write(f"report: {report}\n")
    return 1 if any(outcome.error for outcome in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
