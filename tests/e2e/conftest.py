"""`emptied_stack`: a module that starts on an emptied stack (`cdc clean`, logs kept, then `up`).

kinesis-mock's cost grows with what it holds (it rewrites its whole data file every persist
interval, and a kill restarts it from that file) and so does every `verify`, which recomputes
each sink from the whole Users table. The chaos module kills kinesis-mock and verifies after
every fault: on the stack the session filled before it, a kinesis-mock kill took minutes to
recover from. An emptied stack costs one start (~15 s, plus the KCL's first lease creation).
"""

from __future__ import annotations

import pytest

from infra import stack as local_stack


@pytest.fixture(scope="module")
def emptied_stack(stack, pipeline):
    local_stack.clean(stack, keep_logs=True)
    local_stack.up(stack, pipeline)
    return stack
