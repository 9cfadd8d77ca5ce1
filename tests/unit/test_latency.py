"""Change-to-apply latency: the processors' window, its quantiles, the EMF sample, and the
status merging an app's processors."""

from __future__ import annotations

import time
from types import SimpleNamespace

from consumers.runtime.latency import LatencyWindow, quantile, sample
from consumers.runtime.stats import WorkerStats, write_stats
from infra.ops.status import latency


def test_the_window_keeps_the_last_minute_and_at_most_its_limit():
    window = LatencyWindow(window_s=60, limit=4)
    window.add(1_000.0, [10, 20])
    window.add(1_050.0, [30])
    assert window.recent(1_055.0) == [10, 20, 30]
    assert window.recent(1_070.0) == [30]  # the first two were applied more than 60 s before
    window.add(1_071.0, [1, 2, 3, 4, 5])
    assert window.recent(1_071.0) == [2, 3, 4, 5]  # the newest 4


def test_quantiles_are_nearest_rank():
    values = list(range(1, 101))
    assert (quantile(values, 0.5), quantile(values, 0.99), quantile(values, 1.0)) == (50, 99, 100)
    assert quantile([7], 0.99) == 7
    assert quantile([], 0.5) is None


def test_the_emf_sample_keeps_the_extremes_and_at_most_the_limit():
    values = list(range(1_000, 0, -1))
    picked = sample(values, 100)
    assert len(picked) == 100 and picked[0] == 1 and picked[-1] == 1_000 and picked == sorted(picked)
    assert sample([3, 1], 100) == [3, 1]


def test_status_merges_the_apps_processors_of_the_last_minute(tmp_path):
    stats = tmp_path / "apps" / "pkg" / "stats"
    stats.mkdir(parents=True)
    now = time.time()
    write_stats(stats, WorkerStats("app", "shard-0", at=now, latency_ms=tuple(range(1, 51))), pid=1)
    write_stats(stats, WorkerStats("app", "shard-1", at=now, latency_ms=tuple(range(51, 101))), pid=2)
    write_stats(stats, WorkerStats("app", "shard-2", at=now - 120, latency_ms=(99_999,)), pid=3)  # a stopped one
    workers = SimpleNamespace(local_stats=True, app=SimpleNamespace(package="pkg"))
    stack = SimpleNamespace(state_dir=tmp_path)
    assert latency(stack, workers) == {"latency_p50_ms": 50, "latency_p99_ms": 99}  # type: ignore[arg-type]
    write_stats(stats, WorkerStats("app", "shard-0", at=now), pid=1)
    write_stats(stats, WorkerStats("app", "shard-1", at=now), pid=2)
    assert latency(stack, workers) == {"latency_p50_ms": None, "latency_p99_ms": None}  # type: ignore[arg-type]
