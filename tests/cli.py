"""The stack tests' way to run `cdc` as a user would: a subprocess of `python -m infra.ops.cli`."""

from __future__ import annotations

import json
import subprocess
import sys

from services.config import REPO_ROOT


def cdc(*args: str, env: dict[str, str] | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "infra.ops.cli", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def cdc_json(*args: str, env: dict[str, str] | None = None) -> list | dict:
    result = cdc(*args, "--json", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout)
