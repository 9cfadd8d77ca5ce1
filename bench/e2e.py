"""End to end on the running local stack: sustained changes/s, replay records/s, 1 vs 2 workers.

    python -m bench.e2e [--quick] [--preload N] [--changes N]

Every component runs, one worker per app, kinesis-mock persisting at the stack's interval:
  preload    the Users table and the streams hold at least ``--preload`` changes (30,000; quick
             3,000), written first if they do not, and every sink has converged;
  sustained  ``--changes`` more (100,000; quick 5,000) written by the batched generator as fast as
             it goes; the figure is changes / (first write -> every sink verified equal to Users),
             beside the generator's own write rate into DynamoDB Local (its ceiling: the
             pipeline cannot deliver faster than changes are made). Target >= 250 changes/s;
  replay     app-user-management replayed from the start of its stream (``cdc replay``): every
             record it holds, through one worker, then through two; records/s over the
             processing (first record in -> all caught up) and over the whole command (stop,
             lease reset, JVM start, the KCL's lease taking), beside the rate a plain reader gets
             from the same stream (GetRecords of every shard, one thread: the emulator's ceiling).
             Target >= 2,000 records/s.
Returns a Section (``bench.report``); the CLI prints it.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from bench.figures import Figure, Section, Series
from consumers.runtime.config import discover_apps
from consumers.verify import verify
from infra.local import stack as local_stack
from infra.local.components import components
from infra.local.stack import running_workers
from infra.ops.apps import local_workers
from infra.ops.replay import replay, stream_window
from producer_config import load_pipeline
from scripts.changes.cli import _scan
from scripts.changes.generator import UserChangeGenerator
from scripts.changes.writer import BATCH_SIZE, CONCURRENCY, apply_changes
from services.clients import aws_client, aws_resource
from services.config import StackConfig
from services.kinesis import read_stream

__all__ = ["measure"]

REPLAYED_APP = "app-user-management"


def _converge(stack, pipeline, timeout_s: float, samples: list[tuple[float, float]], t0: float) -> float:
    """Seconds until every sink equals Users (``verify``); notes (elapsed, missing items) as it goes."""
    deadline = time.monotonic() + timeout_s
    while True:
        reports = verify(stack, pipeline)
        missing = sum(len(r.missing) + len(r.stale) for r in reports)
        samples.append((time.monotonic() - t0, missing))
        if all(r.ok for r in reports):
            return time.monotonic() - t0
        if time.monotonic() > deadline:
            raise RuntimeError(f"sinks not converged after {timeout_s:.0f}s: " + "; ".join(str(r) for r in reports))
        time.sleep(2)


def _write(stack, pipeline, changes: int, users: int, seed: int) -> tuple[int, float]:
    table = aws_resource("dynamodb", stack, pipeline.region).Table("Users")
    generator = UserChangeGenerator(users=users, seed=seed)
    generator.adopt(item for page in _scan(table) for item in page)
    started = time.monotonic()
    written = apply_changes(
        table,
        generator.changes(changes),
        total=changes,
        progress=False,
        batch_size=BATCH_SIZE,
        concurrency=CONCURRENCY,
    )
    return written, time.monotonic() - started


def _cpu_seconds() -> dict[int, tuple[int, float]]:
    """pid -> (parent pid, CPU seconds used so far), from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        found[int(stat.parent.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / tick)
    return found


def _tree_cpu(root: int, table: dict[int, tuple[int, float]], others: set[int]) -> float:
    """CPU seconds of ``root`` and its descendants, leaving out the subtrees of ``others`` (a
    stack this benchmark started is its children: each component counts on its own line)."""
    children: dict[int, list[int]] = {}
    for pid, (parent, _) in table.items():
        children.setdefault(parent, []).append(pid)
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        total += table.get(pid, (0, 0.0))[1]
        todo += [child for child in children.get(pid, []) if child not in others]
    return total


def _processes(stack, pipeline) -> dict[str, int]:
    """Each running component of the stack and each worker (with its record processors): its PID."""
    found = {c.process.name: c.process.pid() for c in components(stack, pipeline)}
    found.update({p.name: p.pid() for p in running_workers(stack)})
    found["this benchmark (generator, verify)"] = os.getpid()
    return {name: pid for name, pid in found.items() if pid is not None}


def _cpu_note(before: dict[str, float], after: dict[str, float], seconds: float) -> str:
    used = {name: after[name] - before.get(name, 0.0) for name in after}
    shares = ", ".join(f"{name} {cpu / seconds:.0%}" for name, cpu in sorted(used.items(), key=lambda kv: -kv[1]))
    return f"CPU per process (share of one core) over the sustained run, {os.cpu_count()} cores: {shares}"


def _rss_note(pids: dict[str, int]) -> str:
    def rss_mb(pid: int) -> float:
        try:
            line = next(x for x in Path(f"/proc/{pid}/status").read_text().splitlines() if x.startswith("VmRSS:"))
        except (OSError, StopIteration):
            return 0.0
        return int(line.split()[1]) / 1024

    return "resident memory after the sustained run: " + ", ".join(
        f"{name} {rss_mb(pid):,.0f} MB" for name, pid in pids.items()
    )


def _stream_records(kinesis, stream: str) -> int:
    return sum(1 for _ in read_stream(kinesis, stream, datetime.fromtimestamp(0, UTC)))


def measure(quick: bool, preload: int | None = None, changes: int | None = None) -> Section:
    preload = preload or (3_000 if quick else 30_000)
    changes = changes or (5_000 if quick else 100_000)
    stack, pipeline = StackConfig.from_env(), load_pipeline()
    local_stack.up(stack, pipeline)
    kinesis = aws_client("kinesis", stack, pipeline.region)
    section = Section("End to end on the local stack (every component, one worker per app, persistence on)")
    users = max(1_000, (preload + changes) // 10)

    held = _stream_records(kinesis, "users-changes")
    if held < preload:
        _write(stack, pipeline, preload - held, users, seed=1)
    _converge(stack, pipeline, 600 + preload / 20, [], time.monotonic())

    progress: list[tuple[float, float]] = []
    pids = _processes(stack, pipeline)
    table = _cpu_seconds()
    tracked = set(pids.values())
    cpu_before = {name: _tree_cpu(pid, table, tracked) for name, pid in pids.items()}
    t0 = time.monotonic()
    written, write_s = _write(stack, pipeline, changes, users, seed=int(time.time()))
    total_s = _converge(stack, pipeline, 600 + changes / 50, progress, t0)
    table = _cpu_seconds()
    section.notes.append(
        _cpu_note(cpu_before, {name: _tree_cpu(pid, table, tracked) for name, pid in pids.items()}, total_s)
    )
    section.notes.append(_rss_note(pids))
    section.figures.append(
        Figure(
            f"changes/s written and converged in all three sinks ({written:,} changes on a stack holding {held:,}+)",
            written / total_s,
            "changes/s",
            ceiling=written / write_s,
            ceiling_name="the generator's own write rate into DynamoDB Local (same run)",
            target=">= 250 changes/s",
            met=written / total_s >= 250,
        )
    )
    section.series.append(
        Series(
            "Sustained run: items not yet equal in the sinks",
            "seconds since the first write",
            "items behind",
            {"behind": progress},
        )
    )

    app = next(a for a in discover_apps(pipeline) if a.name == REPLAYED_APP)
    stream = app.stream_name
    started = time.monotonic()
    in_stream = _stream_records(kinesis, stream)
    read_rate = in_stream / (time.monotonic() - started)
    start = stream_window(kinesis, stream)[0]
    for count in (1, 2):
        workers = local_workers(stack, app, pipeline.region)
        workers.scale(count)
        report = replay(stack, app, workers, kinesis, start, timeout_s=600 + in_stream / 100)
        total = sum(report.expected.values())
        processing_s = report.processing_s
        section.figures.append(
            Figure(
                f"replay of {REPLAYED_APP} from TRIM_HORIZON, {count} worker(s), processing ({total:,} records)",
                total / processing_s,
                "records/s",
                ceiling=read_rate,
                ceiling_name="GetRecords of the same stream, one reader",
                target=">= 2,000 records/s",
                met=total / processing_s >= 2_000,
                note=f"whole command {report.seconds:.0f}s = {total / report.seconds:,.0f} records/s",
            )
        )
    local_workers(stack, app, pipeline.region).scale(1)
    final = verify(stack, pipeline)
    section.notes.append(
        "make verify after the runs: " + ("clean" if all(r.ok for r in final) else "; ".join(map(str, final)))
    )
    return section


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.e2e", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--preload", type=int)
    parser.add_argument("--changes", type=int)
    args = parser.parse_args(argv)
    section = measure(args.quick, args.preload, args.changes)
    for figure in section.figures:
        ceiling = f"  (ceiling {figure.ceiling:,.0f}: {figure.ceiling_name})" if figure.ceiling else ""
        print(f"{figure.name}: {figure.value:,.0f} {figure.unit}{ceiling}  {figure.note}")
    for note in section.notes:
        print(note)
    return 0


if __name__ == "__main__":
    sys.exit(main())
