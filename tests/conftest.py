"""Fixtures shared by every test package, and the test tiers.

`--tier ci` (the default; `make test`) leaves out the tests marked `full`: the full-length
versions of tests that run reduced in CI (chaos at 3 rounds, the long replays and reshards).
`--tier all` (`make test-all`) runs them too. A deselected test is listed in the summary line,
never reported as skipped.

`stack` is session-scoped: a private local stack (own state folder, free ports), started for the
session and stopped after it. It runs without the stack supervisor (CDC_SUPERVISE=0, for every
`cdc` and `up` of the session too): its tests kill and start components themselves. The chaos
tests start the supervisor for their own duration. It is defined here because the integration
and e2e packages share it in one session (`make test`: one stack for both); it imports nothing of
the stack (infra) until a test asks for it (`tests.environment`), so the sessions without a
stack never load the local-stack layer (tests/unit/test_conftest_imports.py checks).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from producer_config import PipelineConfig, load_pipeline
from services.config import StackConfig
from tests.environment import local_stack_env, session_stack

TIERS = ("ci", "all")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--tier", choices=TIERS, default="ci", help="ci: leave out the tests marked `full` (make test); all: run them"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--tier") == "all":
        return
    full = [item for item in items if item.get_closest_marker("full")]
    if full:
        config.hook.pytest_deselected(items=full)
        items[:] = [item for item in items if not item.get_closest_marker("full")]


@pytest.fixture(scope="session")
def full_length(request: pytest.FixtureRequest) -> bool:
    """Whether the tests that run reduced in CI run at full length (more changes, more rounds)."""
    return request.config.getoption("--tier") == "all"


@pytest.fixture(scope="session")
def pipeline() -> PipelineConfig:
    return load_pipeline()


@pytest.fixture(scope="session")
def stack(pipeline: PipelineConfig, tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackConfig]:
    """The session's own local stack: a private state folder and free ports, so a stack `make up`
    started is never touched (on a 2-core machine, `make down` it first: two stacks starve each
    other). The environment is set for the whole session, so every `cdc` command and worker a
    test starts reaches this stack. Started here, stopped at the end of the session."""
    with session_stack(local_stack_env(tmp_path_factory.mktemp("local-stack")), pipeline) as config:
        yield config
