"""bench.report: the summary and report.md rendered from Sections, without running a benchmark."""

from __future__ import annotations

import sys
import types
from datetime import UTC, datetime

import pytest

from bench import report
from bench.figures import Figure, Section, Series

SECTION = Section(
    "Apps through the MultiLangDaemon",
    figures=[
        Figure(
            "app-user-management",
            800.0,
            "records/s",
            ceiling=1000.0,
            ceiling_name="min(no-op, raw sink)",
            target=">= 80%",
            met=True,
        ),
        Figure("relay | lag", 0.25, "s"),
    ],
    series=[Series("Put rate vs stored", "records stored", "records/s", {"patched": [(5000.0, 7500.0)]})],
    notes=["measured on a busy machine"],
)


def test_format_number():
    assert report.format_number(None) == "-"
    assert report.format_number(123456.7) == "123,457"
    assert report.format_number(12.0) == "12"
    assert report.format_number(0.12345) == "0.123"
    assert report.format_number(float("nan")) == "n/a"


def test_summary_rows_carry_ratio_and_verdict():
    rows = report.summary_rows([report.Outcome("apps", section=SECTION)])
    assert rows[0] == (
        "apps: app-user-management",
        "800 records/s",
        "1,000 records/s (min(no-op, raw sink))",
        "0.80",
        "yes (>= 80%)",
    )
    assert rows[1] == ("apps: relay | lag", "0.25 s", "-", "-", "-")


def test_missed_target_reads_no():
    figure = Figure("x", 1.0, "s", target="< 1", met=False)
    rows = report.summary_rows([report.Outcome("m", section=Section("t", figures=[figure]))])
    assert rows[0][-1] == "NO (< 1)"


def test_render_summary_names_skipped_and_failed_modules():
    text = report.render_summary(
        [
            report.Outcome("apps", section=SECTION),
            report.Outcome("e2e", skipped="not importable yet"),
            report.Outcome("relay", error="Traceback...\nRuntimeError: boom\n"),
        ]
    )
    assert text.splitlines()[0].split() == ["figure", "value", "ceiling", "ratio", "target", "met"]
    assert "skipped e2e: not importable yet" in text
    assert "FAILED relay: RuntimeError: boom" in text


def test_render_markdown_has_machine_command_tables_notes_and_charts():
    started = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)
    name = report.chart_name("apps", 0, SECTION.series[0])
    text = report.render_markdown(
        [report.Outcome("apps", section=SECTION, seconds=3), report.Outcome("e2e", skipped="not yet")],
        {"CPUs": "2 x Test CPU"},
        "python -m bench.report --quick",
        started,
        {"apps": [name]},
    )
    assert "Command: `python -m bench.report --quick`" in text
    assert "| CPUs | 2 x Test CPU |" in text
    assert "## Apps through the MultiLangDaemon (`bench.apps`)" in text
    assert "relay \\| lag" in text  # a pipe inside a cell is escaped
    assert "- measured on a busy machine" in text
    assert f"![{name}]({name})" in text
    assert name == "apps-1-put-rate-vs-stored.png"
    assert "Skipped: not yet" in text


def test_run_module_skips_a_missing_module_and_reports_a_raising_one(monkeypatch):
    assert report.run_module("does_not_exist_yet", quick=True).skipped

    def measure(quick: bool) -> Section:
        raise RuntimeError("boom")

    module = types.ModuleType("bench._raising")
    module.measure = measure  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "bench._raising", module)
    outcome = report.run_module("_raising", quick=True)
    assert "RuntimeError: boom" in outcome.error


def test_main_writes_report_and_chart(tmp_path, monkeypatch, capsys):
    pytest.importorskip("matplotlib")
    module = types.ModuleType("bench.core")
    module.measure = lambda quick: SECTION  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "bench.core", module)
    assert report.main(["--quick", "--only", "core", "--out", str(tmp_path)]) == 0
    (folder,) = tmp_path.iterdir()
    assert (folder / "report.md").read_text().count("![") == 1
    assert len(list(folder.glob("*.png"))) == 1
    assert "core: app-user-management" in capsys.readouterr().out


def test_noop_properties_keep_the_apps_stream_under_another_application_name(tmp_path):
    from bench.apps import _noop_properties
    from consumers.runtime.config import load_app
    from producer_config import load_pipeline
    from services.config import StackConfig

    pipeline = load_pipeline()
    app = load_app("app_user_management", pipeline)
    stack = StackConfig.from_env({"CDC_STATE_DIR": str(tmp_path)})
    start = datetime(2026, 12, 1, 13, 45, 4, tzinfo=UTC)
    text = _noop_properties(app, pipeline, stack, "bench-noop-x", tmp_path / "stats", start)
    props = dict(line.split(" = ", 1) for line in text.splitlines())
    assert props["streamName"] == app.stream_name
    assert props["applicationName"] == "bench-noop-x"
    assert props["workerId"] == "bench-noop-x-1"
    assert props["executableName"].endswith(f"-m bench.noop_processor --stats {tmp_path / 'stats'}")
    assert props["initialPositionInStreamExtended"] == str(int(start.timestamp()))
    assert "initialPositionInStream" not in props
    assert props["maxRecords"] == str(app.max_records)


def test_processing_span_from_initialize_to_the_last_batch():
    from bench.apps import processing_span

    lines = [
        '{"app": "a", "shard": "s0", "event": "initialize", "ts": 100.0, "position": "AT_TIMESTAMP"}',
        '{"app": "a", "shard": "s1", "event": "initialize", "ts": 100.5, "position": "AT_TIMESTAMP"}',
        "2026-12-01 13:59:14,454 [ShardRecordProcessor-0002] INFO something else",
        '{"app": "a", "shard": "s0", "event": "batch", "ts": 101.0, "ms": 200.0, "received": 500}',
        '{"app": "a", "shard": "s1", "event": "batch", "ts": 103.0, "ms": 100.0, "received": 250}',
        '{"app": "a", "shard": "s1", "event": "batch", "ts": 109.0, "ms": 1.0, "received": 0}',
        '{"app": "b", "shard": "s0", "event": "batch", "ts": 120.0, "ms": 1.0, "received": 9}',
    ]
    assert processing_span(lines, "a") == (750, 100.0, 103.0)
