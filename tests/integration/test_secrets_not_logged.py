"""No secret reaches a log or a state file of the session stack: the local fake AWS secret key
(services.clients.LOCAL_SECRET_ACCESS_KEY, recognisable on purpose) and the OpenSearch password
when one is configured, searched in every file of the log folder and of the state folder (KCL
.properties, PID files, relay positions, stats, overrides, lease backups) but the services'
databases. tests/unit/test_secret_scan.py shows the scan finds a planted secret."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.clients import LOCAL_SECRET_ACCESS_KEY
from tests.procfs import descendants
from tests.secret_scan import files_to_scan, find_secrets, secrets_of

pytestmark = pytest.mark.stack


def _running_secret_keys(pid_dir: Path) -> set[str]:
    """AWS_SECRET_ACCESS_KEY of the workers and the processes below them (the MultiLangDaemons,
    given LOCAL_CREDENTIALS by consumers.runtime.daemon), read from /proc: the secret they use."""
    found = set()
    for pid_file in pid_dir.glob("worker-*.pid"):
        root = pid_file.read_text().strip()
        for pid in descendants(int(root)) if root.isdigit() else ():
            try:
                environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            except OSError:  # ended meanwhile
                continue
            found |= {
                e.partition(b"=")[2].decode(errors="replace")
                for e in environ
                if e.startswith(b"AWS_SECRET_ACCESS_KEY=")
            }
    return found


def test_the_stack_runs_with_the_recognisable_fake_secret(stack):
    keys = _running_secret_keys(stack.pid_dir)
    assert keys, "no worker has AWS_SECRET_ACCESS_KEY in its environment (/proc): the scan would prove nothing"
    assert keys == {LOCAL_SECRET_ACCESS_KEY}, (
        "workers run with another fake secret key than services.clients.LOCAL_SECRET_ACCESS_KEY "
        "(a stack started by older code?): restart it (make down && make up) so the scan means something"
    )


def test_no_secret_in_any_log_or_state_file(stack):
    files = files_to_scan(stack)
    assert any(p.suffix == ".log" for p in files), f"no log under {stack.log_dir}: nothing was scanned"
    assert any(p.suffix == ".properties" for p in files), f"no KCL .properties under {stack.state_dir / 'apps'}"
    leaks = [str(leak) for leak in find_secrets(files, secrets_of(stack))]
    assert leaks == [], "secrets written to files:\n" + "\n".join(leaks)
