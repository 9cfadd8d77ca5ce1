"""`cdc` without a stack: its entry points (`python -m infra.ops.cli`, the ``cdc`` script), its
usage errors and its tables. What each command does to a stack is tested by the stack sessions."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from infra.ops.cli import main
from infra.ops.cli.output import table

ROOT = Path(__file__).resolve().parents[2]
COMMANDS = ("up", "down", "clean", "provision", "apps", "stop", "start", "scale", "replay", "status", "dlq")


def test_python_dash_m_runs_the_command_line():
    done = subprocess.run(
        [sys.executable, "-m", "infra.ops.cli", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: cdc ")
    assert all(f"\n    {name} " in done.stdout or f"\n    {name}\n" in done.stdout for name in COMMANDS)


def test_the_cdc_script_is_main():
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["cdc"] == "infra.ops.cli:main"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["replay", "a", "--since", "9q"], "'9q' is not a duration"),
        (["replay", "a", "--at", "yesterday"], "is not an ISO-8601 time"),
        (["reshard"], "the following arguments are required: stream"),
        (["dlq", "discard", "a"], "one of the arguments --all SHARD SEQ is required"),
    ],
)
def test_bad_usage_exits_2_before_reading_any_configuration(argv, message, capsys):
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


def test_an_unknown_app_is_refused_with_the_apps_there_are(capsys):
    assert main(["stop", "no_such_app"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("cdc stop: unknown app 'no_such_app': the apps are ")
    assert "app_user_management (app-user-management)" in err


def test_a_table_aligns_its_columns_and_shows_none_as_a_dash():
    rows = [{"app": "a", "workers": 2, "leader": None}, {"app": "longer", "workers": 10, "leader": "w-1"}]
    assert table(rows, ("app", "workers", "leader")).splitlines() == [
        "APP     WORKERS  LEADER",
        "a       2        -",
        "longer  10       w-1",
    ]


def test_a_table_of_no_rows_is_its_header():
    # `cdc dlq list` of an app without dead letters printed a traceback here
    assert table([], ("shard", "sequence")) == "SHARD  SEQUENCE"


def test_since_is_one_point_in_time_given_as_a_duration_or_an_iso_time_for_every_command():
    from datetime import UTC, datetime, timedelta

    from infra.ops.cli import _parser

    parser = _parser()
    for argv in (["replay", "a"], ["dlq", "list", "a"]):
        ago = parser.parse_args([*argv, "--since", "30m"]).since
        assert abs(ago - (datetime.now(UTC) - timedelta(minutes=30))) < timedelta(seconds=5)
        at = parser.parse_args([*argv, "--since", "2026-12-01T10:00:00Z"]).since
        assert at == datetime(2026, 12, 1, 10, tzinfo=UTC)


class _Raising:
    def __init__(self, error: BaseException) -> None:
        self.error = error

    def __call__(self) -> None:
        raise self.error


def test_an_aws_error_is_one_line_and_exit_1_and_ctrl_c_is_exit_130(monkeypatch, capsys):
    from botocore.exceptions import ClientError, NoCredentialsError

    from infra.ops import cli

    denied = ClientError({"Error": {"Code": "AccessDeniedException", "Message": "not allowed"}}, "DescribeServices")
    for error, code, line in (
        (denied, 1, "cdc apps: DescribeServices refused: AccessDeniedException: not allowed"),
        (NoCredentialsError(), 1, "cdc apps: Unable to locate credentials"),
        (KeyboardInterrupt(), 130, "cdc apps: interrupted"),
    ):
        monkeypatch.setattr(cli, "Context", _Raising(error))
        assert main(["apps"]) == code
        assert capsys.readouterr().err.strip() == line


def test_progress_bars_only_on_a_terminal_and_never_with_json(monkeypatch):
    import argparse

    from infra.ops.cli.output import progress_off

    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert progress_off(argparse.Namespace(json=False)) is False
    assert progress_off(argparse.Namespace(json=True)) is True
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False)  # a log file, a pipe
    assert progress_off(argparse.Namespace(json=False)) is True


def test_every_command_takes_json():
    import argparse

    from infra.ops.cli import _parser

    def commands(parser: argparse.ArgumentParser, prefix: str = ""):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    yield from (
                        commands(sub, f"{prefix}{name} ")
                        if any(isinstance(a, argparse._SubParsersAction) for a in sub._actions)
                        else [(f"{prefix}{name}", sub)]
                    )

    found = dict(commands(_parser()))
    assert len(found) >= 16
    assert [name for name, sub in found.items() if "--json" not in sub._option_string_actions] == []
