"""The relay's positions: gaps it cannot recover are reported, not hidden. (Holding positions
until Kinesis stored the records: tests/unit/test_durability.py.)"""

from __future__ import annotations

import threading

from infra.local import stack as local_stack
from infra.relay.pump import POLL_IDLE_S, Relay, next_idle_wait
from producer_config import load_pipeline
from services.config import StackConfig


def test_changes_trimmed_before_they_were_relayed_are_recorded_and_reported_by_status(tmp_path, capsys):
    """The relay cannot recover trimmed changes; it must not hide them (no server needed)."""
    pipeline = load_pipeline()
    stack = StackConfig.from_env({"CDC_STATE_DIR": str(tmp_path)})
    relay = Relay(pipeline.table("Users"), pipeline, stack, threading.Event())
    relay.shards = {"shard-1": {"seq": "000042", "done": False}}
    relay._trimmed("shard-1")
    assert relay.shards["shard-1"] == {"seq": None, "done": False}  # reading goes on at TRIM_HORIZON
    capsys.readouterr()
    local_stack.status(stack)
    report = capsys.readouterr().out
    assert "DATA LOST" in report and "table Users, stream shard shard-1: changes after 000042" in report


def test_an_idle_relay_polls_less_often_up_to_a_cap_and_fast_again_once_records_move():
    """Each empty DynamoDB Streams poll is a request DynamoDB Local serves between the sinks'
    transactions: idle, the relay backs off; the cap bounds the latency it adds."""
    first, cap = POLL_IDLE_S
    waits, wait = [], first
    for _ in range(8):
        waits.append(wait)
        wait = next_idle_wait(wait, moved=0)
    assert waits[:3] == [first, 2 * first, 4 * first] and waits[-1] == cap == max(waits)
    assert next_idle_wait(cap, moved=3) == first
