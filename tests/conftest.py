"""Fixtures shared by every test package.

`stack` is session-scoped: it reuses a running local stack (`make up`) or starts one, and
stops at the end of the session only what it started itself. It runs without the stack
supervisor (CDC_SUPERVISE=0, for every `cdc` and `up` of the session too): its tests kill and
start components themselves. The chaos tests start the supervisor for their own duration.
"""

from __future__ import annotations

import os
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
    supervisor = local_stack.supervisor_process(config)
    was_supervised = supervisor.stop(timeout_s=15)
    os.environ["CDC_SUPERVISE"] = "0"
    local_stack.up(config, pipeline)
    yield config
    if not running:
        print("\nstopping the stack the tests started", file=sys.stderr)
        local_stack.down(config)
    elif was_supervised:
        supervisor.start()
