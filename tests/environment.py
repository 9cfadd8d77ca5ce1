"""The private stacks of the test sessions: their endpoints go into os.environ for the whole
session, so every `cdc` command and worker a test starts reaches the session's stack."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from producer_config import PipelineConfig
from services.config import StackConfig


@contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """os.environ with ``values`` set, restored on exit."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextmanager
def session_stack(env: dict[str, str], pipeline: PipelineConfig) -> Iterator[StackConfig]:
    """The stack ``env`` describes, started (`up`) with ``env`` set and stopped (`down`) on exit,
    even when its start fails."""
    from infra.local import stack as stacks  # the local-stack layer: only for the sessions that start one

    with environment(env):
        config = StackConfig.from_env()
        print(f"\n{config.target.value} test stack: state {config.state_dir}", file=sys.stderr)
        try:
            stacks.up(config, pipeline)
            yield config
        finally:
            stacks.down(config)
