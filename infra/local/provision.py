"""Idempotent provisioning of everything `producer_config/pipeline.toml` declares.

Works against any target: the local stack, a LocalStack-style single endpoint, real AWS.
Each step compares what exists with what is declared and acts only on a difference; the
run ends with the list of changes, or says that there was nothing to change.

Streaming destination: where the DynamoDB endpoint implements
``EnableKinesisStreamingDestination`` (AWS, LocalStack) it is used; where it does not
(DynamoDB Local), source tables get DynamoDB Streams (NEW_AND_OLD_IMAGES) and the local
relay (infra/relay/pump.py) does the destination's job.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence

from botocore.exceptions import ClientError

from producer_config import IndexSpec, KeyAttribute, PipelineConfig, StreamSpec, TableSpec, load_pipeline, thaw
from services.clients import aws_client, error_code, opensearch_client
from services.config import StackConfig, StackError

__all__ = ["describe_resources", "provision", "supports_streaming_destination"]

_DYNAMIC_INDEX_SETTINGS = ("number_of_replicas", "refresh_interval", "gc_deletes")
_WAIT_S = 60.0


def supports_streaming_destination(ddb, table_name: str) -> bool:
    """True when the endpoint implements DynamoDB's Kinesis streaming destination API."""
    try:
        ddb.describe_kinesis_streaming_destination(TableName=table_name)
    except ClientError as exc:
        if error_code(exc) in ("UnknownOperationException", "InvalidAction", "NotImplementedException"):
            return False
        if error_code(exc) == "ResourceNotFoundException":
            return True
        raise
    return True


def provision(
    pipeline: PipelineConfig, stack: StackConfig, apps: Sequence = (), say: Callable[[str], None] = print
) -> list[str]:
    """Bring the target in line with the pipeline file and the consumer apps' dead-letter
    tables (the apps' lease tables are the KCL's own); return the changes made."""
    ddb = aws_client("dynamodb", stack, pipeline.region)
    kinesis = aws_client("kinesis", stack, pipeline.region)
    changes: list[str] = []

    def changed(what: str) -> None:
        changes.append(what)
        say(f"  changed  {what}")

    sources = pipeline.source_tables
    native = bool(sources) and supports_streaming_destination(ddb, sources[0].name)
    stream_arns = {name: _ensure_stream(kinesis, spec, changed) for name, spec in pipeline.streams.items()}
    for table in pipeline.tables.values():
        needs_ddb_stream = table.change_stream is not None and not native
        _ensure_table(ddb, table, needs_ddb_stream, changed)
        if table.ttl_attribute:
            _ensure_ttl(ddb, table, changed)
        if table.change_stream and native:
            _ensure_destination(ddb, table, stream_arns[table.change_stream], pipeline.creation_time_precision, changed)
    for app in apps:
        _ensure_table(ddb, _dead_letter_spec(app.dead_letter_table), False, changed)
    if apps:
        _ensure_table(ddb, _control_spec(), False, changed)
    if pipeline.indexes:
        search = opensearch_client(stack)
        for index in pipeline.indexes.values():
            _ensure_index(search, index, changed)
    if native and not _precision_reported(ddb, sources):
        say(COARSE_STAMPS_NOTE)
    mode = "native streaming destination" if native else "DynamoDB Streams + local relay"
    total = len(pipeline.streams) + len(pipeline.tables) + len(pipeline.indexes) + len(apps) + bool(apps)
    say(
        f"provisioning ({mode}): "
        + (f"{len(changes)} change(s)" if changes else f"nothing to change, {total} resources up to date")
    )
    return changes


# ------------------------------------------------------------------------------ Kinesis
def _ensure_stream(kinesis, spec: StreamSpec, changed) -> str:
    try:
        summary = kinesis.describe_stream_summary(StreamName=spec.name)["StreamDescriptionSummary"]
    except ClientError as exc:
        if error_code(exc) != "ResourceNotFoundException":
            raise
        kinesis.create_stream(StreamName=spec.name, ShardCount=spec.shards)
        summary = _wait_stream_active(kinesis, spec.name)
        changed(f"stream {spec.name}: created with {spec.shards} shards")
    if summary["RetentionPeriodHours"] != spec.retention_hours:
        current = summary["RetentionPeriodHours"]
        if spec.retention_hours > current:
            kinesis.increase_stream_retention_period(StreamName=spec.name, RetentionPeriodHours=spec.retention_hours)
        else:
            kinesis.decrease_stream_retention_period(StreamName=spec.name, RetentionPeriodHours=spec.retention_hours)
        _wait_stream_active(kinesis, spec.name)
        changed(f"stream {spec.name}: retention {current}h -> {spec.retention_hours}h")
    if summary["OpenShardCount"] != spec.shards:
        # Resharding is an operation with consequences for consumers, never a side effect.
        raise StackError(
            f"stream {spec.name} has {summary['OpenShardCount']} open shards but pipeline.toml says "
            f"{spec.shards}: reshard it explicitly (docs/operations.md) or fix the file"
        )
    return summary["StreamARN"]


def _wait_stream_active(kinesis, name: str) -> dict:
    deadline = time.monotonic() + _WAIT_S
    while True:
        summary = kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]
        if summary["StreamStatus"] == "ACTIVE":
            return summary
        if time.monotonic() > deadline:
            raise StackError(f"stream {name} still {summary['StreamStatus']} after {_WAIT_S:.0f}s")
        time.sleep(0.1)


# ----------------------------------------------------------------------------- DynamoDB
def _ensure_table(ddb, table: TableSpec, needs_ddb_stream: bool, changed) -> None:
    stream_spec = {"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"}
    key_schema = [{"AttributeName": table.hash_key.name, "KeyType": "HASH"}]
    if table.range_key:
        key_schema.append({"AttributeName": table.range_key.name, "KeyType": "RANGE"})
    try:
        current = ddb.describe_table(TableName=table.name)["Table"]
    except ClientError as exc:
        if error_code(exc) != "ResourceNotFoundException":
            raise
        ddb.create_table(
            TableName=table.name,
            KeySchema=key_schema,
            AttributeDefinitions=[{"AttributeName": k.name, "AttributeType": k.type} for k in table.key_attributes],
            BillingMode="PAY_PER_REQUEST",
            **({"StreamSpecification": stream_spec} if needs_ddb_stream else {}),
        )
        ddb.get_waiter("table_exists").wait(TableName=table.name, WaiterConfig={"Delay": 1, "MaxAttempts": 60})
        changed(f"table {table.name}: created" + (" with DynamoDB Streams" if needs_ddb_stream else ""))
        return
    if current["KeySchema"] != key_schema:
        raise StackError(
            f"table {table.name} exists with key schema {current['KeySchema']}, pipeline.toml declares "
            f"{key_schema}; a key schema cannot change in place"
        )
    if needs_ddb_stream and current.get("StreamSpecification") != stream_spec:
        ddb.update_table(TableName=table.name, StreamSpecification=stream_spec)
        changed(f"table {table.name}: DynamoDB Streams enabled (NEW_AND_OLD_IMAGES)")


def _dead_letter_spec(name: str) -> TableSpec:
    from consumers.runtime.deadletter import DEAD_LETTER_KEY

    hash_key, range_key = (KeyAttribute(k["name"], k["type"]) for k in DEAD_LETTER_KEY)
    return TableSpec(name, hash_key, range_key, version_attribute=None, ttl_attribute=None, change_stream=None)


def _control_spec() -> TableSpec:
    """The apps' control items (`consumers.runtime.control`: a replay's start position)."""
    from consumers.runtime.control import CONTROL_KEY, CONTROL_TABLE

    return TableSpec(CONTROL_TABLE, KeyAttribute(CONTROL_KEY, "S"), None, None, None, None)


def _ensure_ttl(ddb, table: TableSpec, changed) -> None:
    ttl = ddb.describe_time_to_live(TableName=table.name)["TimeToLiveDescription"]
    if ttl.get("TimeToLiveStatus") in ("ENABLED", "ENABLING") and ttl.get("AttributeName") == table.ttl_attribute:
        return
    ddb.update_time_to_live(
        TableName=table.name, TimeToLiveSpecification={"Enabled": True, "AttributeName": table.ttl_attribute}
    )
    changed(f"table {table.name}: TTL on {table.ttl_attribute}")


#: said by provisioning (so once per `make up`) where the destination may stamp whole seconds
COARSE_STAMPS_NOTE = (
    "  note     this endpoint's streaming destination does not report its timestamp precision: a"
    " LocalStack without this project's patch stamps whole seconds, so edits of one item without a"
    " version attribute within one second keep the first. Give such items a version attribute, or"
    " use `make up STACK=localstack` in host mode (docs/reliability.md#ordering-per-target)"
)


def _precision_reported(ddb, sources) -> bool:
    """Whether the destination reports its ApproximateCreationDateTimePrecision, as AWS does and
    LocalStack with ``dynamodb-destination-precision.patch`` does (then it also honours it)."""
    destinations = ddb.describe_kinesis_streaming_destination(TableName=sources[0].name)[
        "KinesisDataStreamDestinations"
    ]
    return any("ApproximateCreationDateTimePrecision" in d for d in destinations)


def _ensure_destination(ddb, table: TableSpec, stream_arn: str, precision: str, changed) -> None:
    current = ddb.describe_kinesis_streaming_destination(TableName=table.name)
    for destination in current.get("KinesisDataStreamDestinations", []):
        if destination["StreamArn"] == stream_arn and destination["DestinationStatus"] in ("ACTIVE", "ENABLING"):
            # an unpatched LocalStack reports no precision (and writes whole seconds whatever
            # was asked): nothing to compare, so nothing to update
            reported = destination.get("ApproximateCreationDateTimePrecision")
            if reported is not None and reported != precision:
                ddb.update_kinesis_streaming_destination(
                    TableName=table.name,
                    StreamArn=stream_arn,
                    UpdateKinesisStreamingConfiguration={"ApproximateCreationDateTimePrecision": precision},
                )
                changed(f"table {table.name}: streaming destination precision -> {precision}")
            return
    ddb.enable_kinesis_streaming_destination(
        TableName=table.name,
        StreamArn=stream_arn,
        EnableKinesisStreamingConfiguration={"ApproximateCreationDateTimePrecision": precision},
    )
    changed(f"table {table.name}: Kinesis streaming destination -> {stream_arn} ({precision})")


# --------------------------------------------------------------------------- OpenSearch
def _ensure_index(search, index: IndexSpec, changed) -> None:
    settings, mappings = thaw(index.settings), thaw(index.mappings)
    if not search.indices.exists(index=index.name):
        search.indices.create(index=index.name, body={"settings": {"index": settings}, "mappings": mappings})
        changed(f"index {index.name}: created")
        return
    current = search.indices.get_settings(index=index.name)[index.name]["settings"]["index"]
    update = {k: settings[k] for k in _DYNAMIC_INDEX_SETTINGS if k in settings and str(settings[k]) != current.get(k)}
    if update:
        search.indices.put_settings(index=index.name, body={"index": update})
        changed(f"index {index.name}: settings {update}")
    existing = search.indices.get_mapping(index=index.name)[index.name]["mappings"].get("properties", {})
    missing = {k: v for k, v in mappings.get("properties", {}).items() if k not in existing}
    if missing:
        search.indices.put_mapping(index=index.name, body={"properties": missing})
        changed(f"index {index.name}: new fields {sorted(missing)}")


# ------------------------------------------------------------------------------- status
def describe_resources(pipeline: PipelineConfig, stack: StackConfig) -> Iterator[str]:
    """Lines for `make status`: shards per stream, approximate items per table, docs per index."""
    kinesis = aws_client("kinesis", stack, pipeline.region)
    ddb = aws_client("dynamodb", stack, pipeline.region)
    yield "streams:"
    for name in pipeline.streams:
        try:
            shards = [
                s for page in kinesis.get_paginator("list_shards").paginate(StreamName=name) for s in page["Shards"]
            ]
        except ClientError as exc:
            yield f"  {name:<32} {error_code(exc)}"
            continue
        open_count = sum("EndingSequenceNumber" not in s["SequenceNumberRange"] for s in shards)
        yield f"  {name:<32} {open_count} open shards ({len(shards)} in all)"
    yield "tables:"
    for name in pipeline.tables:
        try:
            count = ddb.describe_table(TableName=name)["Table"].get("ItemCount", 0)
            yield f"  {name:<32} ~{count} items"
        except ClientError as exc:
            yield f"  {name:<32} {error_code(exc)}"
    if pipeline.indexes:
        search = opensearch_client(stack)
        yield "indexes:"
        for name in pipeline.indexes:
            if search.indices.exists(index=name):
                yield f"  {name:<32} {search.count(index=name)['count']} documents"
            else:
                yield f"  {name:<32} missing"


if __name__ == "__main__":
    from consumers.runtime.config import discover_apps

    config = load_pipeline()
    provision(config, StackConfig.from_env(), discover_apps(config))
