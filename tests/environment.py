"""The private stacks of the test sessions: their endpoints go into os.environ for the whole
session, so every `cdc` command and worker a test starts reaches the session's stack.

The root conftest imports this module in every session, the unit tests' included: the
local-stack layer (infra) is imported only inside the functions a session that starts a stack
calls."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

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


def local_stack_env(state_dir: Path) -> dict[str, str]:
    """The environment of a private local stack: its own state folder and free ports, so a stack
    `make up` started is never touched, and no stack supervisor (CDC_SUPERVISE=0): its tests kill
    and start components themselves."""
    from infra.local.preflight import free_opensearch_port, free_port  # the local-stack layer: only when one starts

    return {
        "CDC_TARGET": "local",
        "CDC_STATE_DIR": str(state_dir),
        "CDC_SUPERVISE": "0",
        "CDC_OPENSEARCH_PORT": str(free_opensearch_port()),
        **{
            name: str(free_port())
            for name in (
                "CDC_DYNAMODB_PORT",
                "CDC_LEASES_PORT",
                "CDC_KINESIS_PORT",
                "CDC_KINESIS_TLS_PORT",
                "CDC_OPENSEARCH_TRANSPORT_PORT",
                "CDC_WEBHOOK_PORT",
            )
        },
    }


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
