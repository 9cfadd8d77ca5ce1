"""Print the last records of a table's change stream, one line each (used by `make demo`)."""

from __future__ import annotations

import argparse
import sys

import orjson

from infra.clients import aws_client
from infra.config import StackConfig
from infra.streams import read_stream
from producer_config import load_pipeline


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--table", default="Users")
    parser.add_argument("--last", type=int, default=20)
    args = parser.parse_args(argv)
    pipeline = load_pipeline()
    table = pipeline.table(args.table)
    kinesis = aws_client("kinesis", StackConfig.from_env(), pipeline.region)
    records = list(read_stream(kinesis, table.change_stream))
    print(f"{table.change_stream}: {len(records)} records in retention; the last {min(args.last, len(records))}:")
    version_attr = table.version_attribute or ""
    for record in sorted(records, key=lambda r: int(r.sequence_number))[-args.last:]:
        change = orjson.loads(record.data)
        image = change["dynamodb"].get("NewImage") or change["dynamodb"].get("OldImage") or {}
        version = next(iter(image.get(version_attr, {"-": "-"}).values()))
        keys = ",".join(f"{k}={next(iter(v.values()))}" for k, v in change["dynamodb"]["Keys"].items())
        print(f"  {record.shard_id}  {change['eventName']:<6}  {keys:<16}  {version_attr}={version:<14}  "
              f"t={change['dynamodb']['ApproximateCreationDateTime']}  id={change['eventID'][:8]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
