"""`emptied_stack`: a module that starts on an emptied stack (`cdc clean`, logs kept, then `up`).

kinesis-mock's cost grows with what it holds (it rewrites its whole data file every persist
interval, and a kill restarts it from that file) and so does every `verify`, which recomputes
each sink from the whole Users table. The chaos module kills kinesis-mock and verifies after
every fault: on the stack the session filled before it, a kinesis-mock kill took minutes to
recover from. The pipeline module counts records exactly, which a re-delivery of an earlier
module's records would break. An emptied stack costs one start (~15 s, plus ~45 s of the KCL
creating the leases of empty lease tables).
"""

from __future__ import annotations

import pytest

from infra.local import stack as local_stack


@pytest.fixture(scope="module")
def emptied_stack(stack, pipeline):
    local_stack.clean(stack, keep_logs=True)
    local_stack.up(stack, pipeline)
    return stack
