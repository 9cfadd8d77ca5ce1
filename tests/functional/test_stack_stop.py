"""`make down` / `make clean` stop every worker of the stack, whatever `app.workers` says now.

Real processes, no server: stand-ins whose command line is a worker's (the stop logic finds
workers by their command line and PID files only)."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from infra.local import stack as local_stack
from services.config import StackConfig


def _stand_in(stack: StackConfig, package: str, n: int) -> subprocess.Popen:
    # `python -c` keeps the rest of the command line in argv, as the real worker's is
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time; time.sleep(120)",
            "-m",
            "consumers.runtime.daemon",
            "--app",
            package,
            "--worker",
            str(n),
            "--state-dir",
            str(stack.state_dir),
        ],
        start_new_session=True,
    )


def _alive(proc: subprocess.Popen) -> bool:
    return proc.poll() is None


@pytest.mark.parametrize("command", [local_stack.down, local_stack.clean])
def test_a_worker_beyond_the_configured_count_is_stopped_too(tmp_path, command, capsys):
    # GIVEN worker 2 of an app configured for 1 worker, running without a PID file (as after a
    # clean), and a worker of another stack (another state folder) on the same machine
    stack = StackConfig.from_env({"CDC_STATE_DIR": str(tmp_path / "state")})
    other = StackConfig.from_env({"CDC_STATE_DIR": str(tmp_path / "other")})
    orphan, foreign = _stand_in(stack, "app_user_management", 2), _stand_in(other, "app_user_management", 2)
    try:
        time.sleep(0.3)
        assert [p.name for p in local_stack.running_workers(stack)] == ["worker-app_user_management-2"]
        # WHEN the stack is stopped
        command(stack)
        # THEN the orphan is gone, said so, and the other stack's worker is untouched
        orphan.wait(timeout=10)
        assert "worker-app_user_management-2 (not in the apps' configuration now)" in capsys.readouterr().err
        assert _alive(foreign)
        assert local_stack.running_workers(stack) == ()
    finally:
        for proc in (orphan, foreign):
            proc.kill()
            proc.wait()


def test_a_scaled_worker_count_outlives_down_and_up_and_clean_forgets_it(tmp_path):
    from consumers.runtime.config import load_app
    from consumers.runtime.overrides import Overrides, save_overrides
    from producer_config import load_pipeline

    pipeline = load_pipeline()
    stack = StackConfig.from_env({"CDC_STATE_DIR": str(tmp_path / "state")})
    app = load_app("app_user_management", pipeline)

    def counted() -> int:
        return sum(
            1 for c in local_stack.workers(stack, pipeline) if c.process.name.startswith(f"worker-{app.package}-")
        )

    assert counted() == app.workers  # nothing scaled: app.toml
    save_overrides(stack.state_dir, app.package, Overrides(workers=3))  # what `cdc scale` keeps
    assert counted() == 3  # what `make up` starts, after any `make down`
    local_stack.clean(stack)
    assert counted() == app.workers
