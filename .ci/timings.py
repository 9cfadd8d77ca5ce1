"""Where the minutes of a test run went: each phase `.ci/timed` recorded, then the slowest tests
of every pytest session's JUnit XML (setup + call + teardown).

    python .ci/timings.py [DIR] [--slowest 25] [--markdown]

DIR defaults to $CDC_TIMINGS_DIR or test-results/. Standard library only: it runs before the
project's venv exists and after a failed one.
"""

from __future__ import annotations

import argparse
import os
import sys
import xml.etree.ElementTree as ET
from pathlib import Path


def _minutes(seconds: float) -> str:
    return f"{int(seconds // 60)} min {seconds % 60:04.1f} s" if seconds >= 60 else f"{seconds:.1f} s"


def phases(directory: Path) -> list[tuple[str, float, int]]:
    path = directory / "phases.tsv"
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        name, seconds, status = line.split("\t")
        rows.append((name, float(seconds), int(status)))
    return rows


def tests(directory: Path) -> list[tuple[float, str, str]]:
    """(seconds, session, test id) for every test case of every JUnit XML in the folder."""
    cases = []
    for xml in sorted(directory.glob("*.xml")):
        for case in ET.parse(xml).getroot().iter("testcase"):
            name = f"{case.get('classname', '').replace('.', '/')}.py::{case.get('name')}"
            cases.append((float(case.get("time") or 0), xml.stem, name))
    return sorted(cases, reverse=True)


def report(directory: Path, slowest: int, markdown: bool) -> str:
    rows = phases(directory)
    lines = []
    if markdown:
        lines += ["| phase | time | exit |", "| --- | ---: | ---: |"]
        lines += [f"| {name} | {_minutes(s)} | {status} |" for name, s, status in rows]
        lines.append(f"| **all** | **{_minutes(sum(s for _, s, _ in rows))}** | |")
    else:
        width = max([len(name) for name, _, _ in rows] + [5])
        lines.append(f"{'phase':<{width}}  {'time':>13}  exit")
        lines += [f"{name:<{width}}  {_minutes(s):>13}  {status:>4}" for name, s, status in rows]
        lines.append(f"{'all':<{width}}  {_minutes(sum(s for _, s, _ in rows)):>13}")
    cases = tests(directory)
    if cases:
        lines.append("")
        lines.append(f"{min(slowest, len(cases))} slowest of {len(cases)} tests (setup + call + teardown):")
        if markdown:
            lines += ["", "| time | session | test |", "| ---: | --- | --- |"]
            lines += [f"| {_minutes(s)} | {session} | `{name}` |" for s, session, name in cases[:slowest]]
        else:
            lines += [f"{_minutes(s):>13}  {session:<10}  {name}" for s, session, name in cases[:slowest]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "directory", nargs="?", type=Path, default=Path(os.environ.get("CDC_TIMINGS_DIR", "test-results"))
    )
    parser.add_argument("--slowest", type=int, default=25, help="how many of the slowest tests to list (default 25)")
    parser.add_argument("--markdown", action="store_true", help="Markdown tables (for the README)")
    args = parser.parse_args(argv)
    if not args.directory.is_dir():
        print(f"timings: no {args.directory}/ (nothing was timed)", file=sys.stderr)
        return 1
    print(report(args.directory, args.slowest, args.markdown))
    return 0


if __name__ == "__main__":
    sys.exit(main())
