"""Print the newest records of a table's change stream, one line each (used by `make demo`)."""

from __future__ import annotations

import argparse
import sys

from consumers.shared import envelope
from consumers.shared.errors import InvalidChangeRecord
from producer_config import load_pipeline
from services.clients import aws_client
from services.config import StackConfig
from services.kinesis import StreamRecord, read_stream


def _describe(record: StreamRecord, version_attribute: str) -> tuple[int, str]:
    """(creation time, one line) of a record; anything that is not a change record says so."""
    try:
        change = envelope.parse_payload(record.data)
        body = change[envelope.BODY]
        image = body.get(envelope.NEW_IMAGE) or body.get(envelope.OLD_IMAGE) or {}
        version = next(iter(image.get(version_attribute, {"-": "-"}).values()))
        keys = ",".join(f"{k}={next(iter(v.values()))}" for k, v in body[envelope.KEYS].items())
        created = int(body[envelope.CREATED])
        return created, (
            f"{change[envelope.EVENT_NAME]:<6}  {keys:<16}  {version_attribute}={version:<14}  "
            f"t={created}  id={change[envelope.EVENT_ID][:8]}"
        )
    except (InvalidChangeRecord, KeyError, TypeError, ValueError, AttributeError, StopIteration):
        return 0, f"(not a change record: {record.data[:60]!r})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--table", default="Users")
    parser.add_argument("--last", type=int, default=20)
    args = parser.parse_args(argv)
    pipeline = load_pipeline()
    table = pipeline.table(args.table)
    kinesis = aws_client("kinesis", StackConfig.from_env(), pipeline.region)
    lines = []
    for record in read_stream(kinesis, table.stream):
        created, text = _describe(record, table.version_attribute or "")
        # newest by creation time: sequence numbers are ordered within a shard only
        lines.append((created, record.shard_id, int(record.sequence_number), text))
    lines.sort()
    print(f"{table.change_stream}: {len(lines)} records in retention; the newest {min(args.last, len(lines))}:")
    for _, shard_id, _, text in lines[-args.last :]:
        print(f"  {shard_id}  {text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
