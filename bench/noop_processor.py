"""A kclpy record processor that only checkpoints: the MultiLangDaemon's own ceiling (bench.apps).

    executableName = <python> -m bench.noop_processor --stats <folder>

Each batch: note when it arrived, checkpoint at its last record, and save the shard's running
totals (``<folder>/<shard>.json``: received, initialize time, first batch start, last batch end). stdout is the
daemon's protocol channel: nothing here prints.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from amazon_kclpy import kcl
from amazon_kclpy.v3 import processor


class NoopProcessor(processor.RecordProcessorBase):
    def __init__(self, stats: Path) -> None:
        self.stats = stats
        self.shard = "?"
        self.received = 0
        self.initialized = time.time()
        self.first: float | None = None
        self.last = 0.0

    def initialize(self, initialize_input) -> None:
        self.shard = initialize_input.shard_id
        self.initialized = time.time()

    def process_records(self, process_records_input) -> None:
        records = process_records_input.records
        if not records:
            return
        started = time.time()
        self.first = started if self.first is None else self.first
        last = records[-1]
        process_records_input.checkpointer.checkpoint(last.sequence_number, last.sub_sequence_number)
        self.received += len(records)
        self.last = time.time()
        path = self.stats / f"{self.shard}.json"
        path.with_suffix(".tmp").write_text(
            json.dumps(
                {"received": self.received, "initialized": self.initialized, "first": self.first, "last": self.last}
            )
        )
        path.with_suffix(".tmp").replace(path)

    def lease_lost(self, lease_lost_input) -> None:
        pass

    def shard_ended(self, shard_ended_input) -> None:
        shard_ended_input.checkpointer.checkpoint()

    def shutdown_requested(self, shutdown_requested_input) -> None:
        shutdown_requested_input.checkpointer.checkpoint()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stats", required=True, type=Path)
    args = parser.parse_args()
    args.stats.mkdir(parents=True, exist_ok=True)
    kcl.KCLProcess(NoopProcessor(args.stats)).run()


if __name__ == "__main__":
    main()
