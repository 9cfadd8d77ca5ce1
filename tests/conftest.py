"""Fixtures shared by every test package.

`stack` is session-scoped: it reuses a running local stack (`make up`) or starts one, and
stops at the end of the session only what it started itself.
"""

from __future__ import annotations

import sys

import pytest

from infra import stack as local_stack
from infra.components import components
from producer_config import PipelineConfig, load_pipeline
from targets.config import StackConfig, Target


@pytest.fixture(scope="session")
def pipeline() -> PipelineConfig:
    return load_pipeline()


@pytest.fixture(scope="session")
def stack(pipeline: PipelineConfig):
    config = StackConfig.from_env()
    if config.target is not Target.LOCAL:
        pytest.fail(f"the integration tests run against the local stack, not CDC_TARGET={config.target.value}")
    running = [c for c in components(config, pipeline) if c.process.pid() is not None]
    local_stack.up(config, pipeline)
    yield config
    if not running:
        print("\nstopping the stack the tests started", file=sys.stderr)
        local_stack.down(config)
