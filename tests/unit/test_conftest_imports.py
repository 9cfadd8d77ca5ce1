"""The sessions without a stack load nothing of it: the root conftest (every session imports it)
and the unit tests' conftest import no `infra` module, and a unit session of tests that test
no infra code ends with none loaded. The stack fixtures import the local-stack layer only when
a test asks for a stack (`tests.environment`). Each check runs in a fresh interpreter: this one
has imported infra for the tests that test it on purpose."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

#: prints the infra modules loaded after importing the modules named on the command line
_IMPORT = """
import importlib, sys
for name in sys.argv[1:]:
    importlib.import_module(name)
print("\\n".join(sorted(m for m in sys.modules if m == "infra" or m.startswith("infra."))))
"""

#: prints the infra modules loaded after a pytest session of the test files named
_SESSION = """
import contextlib, io, sys
import pytest
with contextlib.redirect_stdout(io.StringIO()):
    status = pytest.main(["-q", "-p", "no:cacheprovider", *sys.argv[1:]])
assert status == 0, f"the session failed: {status}"
print("\\n".join(sorted(m for m in sys.modules if m == "infra" or m.startswith("infra."))))
"""


def _infra_loaded(program: str, *args: str) -> list[str]:
    done = subprocess.run([sys.executable, "-c", program, *args], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


@pytest.mark.parametrize("module", ["tests.conftest", "tests.unit.conftest", "tests.environment"])
def test_a_conftest_of_the_sessions_without_a_stack_imports_no_infra(module):
    assert _infra_loaded(_IMPORT, module) == []


def test_a_unit_session_of_tests_that_test_no_infra_loads_none():
    assert _infra_loaded(_SESSION, "tests/unit/test_planning.py", "tests/unit/test_worker_stats.py") == []
