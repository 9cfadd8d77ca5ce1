"""Reconciliation: recompute every sink from the current `Users` table and compare.

    python -m consumers.verify        (make verify)   exit 0 when every sink equals its source

For each sink it reports the items that are missing, extra (present but absent from the
source, tombstones excluded) or stale (present with other content). It is the oracle of the
end-to-end tests. It reads whole tables: meant for the local stack and test data sizes.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any, Iterator, Mapping

from botocore.exceptions import EndpointConnectionError
from opensearchpy import helpers

from consumers.app_user_management.transform import project_user
from consumers.runtime.config import load_app
from consumers.shared.records import decode_image
from consumers.sinks.dynamodb import TOMBSTONE_ATTRIBUTE
from consumers.sinks.opensearch import template_document_id
from consumers.workplace_user_search.transform import search_document
from consumers.workplace_user_v2.transform import membership_items
from targets.clients import aws_client, opensearch_client
from targets.config import StackConfig
from producer_config import PipelineConfig, load_pipeline

__all__ = ["SinkReport", "verify"]


@dataclass(frozen=True, slots=True)
class SinkReport:
    sink: str
    expected: int
    actual: int
    missing: tuple[str, ...]
    extra: tuple[str, ...]
    stale: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not (self.missing or self.extra or self.stale)

    def __str__(self) -> str:
        head = (f"{self.sink:<32} expected {self.expected:>6}  actual {self.actual:>6}  missing {len(self.missing):>4}"
                f"  extra {len(self.extra):>4}  stale {len(self.stale):>4}  {'OK' if self.ok else 'DIFFERS'}")
        samples = [f"    {kind}: {', '.join(keys[:5])}" for kind, keys in
                   (("missing", self.missing), ("extra", self.extra), ("stale", self.stale)) if keys]
        return "\n".join([head, *samples])


def _compare(sink: str, expected: Mapping[str, Any], actual: Mapping[str, Any]) -> SinkReport:
    return SinkReport(
        sink=sink,
        expected=len(expected),
        actual=len(actual),
        missing=tuple(sorted(expected.keys() - actual.keys())),
        extra=tuple(sorted(actual.keys() - expected.keys())),
        stale=tuple(sorted(k for k in expected.keys() & actual.keys() if expected[k] != actual[k])),
    )


def _scan(ddb, table: str) -> Iterator[dict[str, Any]]:
    for page in ddb.get_paginator("scan").paginate(TableName=table, ConsistentRead=True):
        for item in page["Items"]:
            yield decode_image(item)


def _live(items: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    return (item for item in items if not item.get(TOMBSTONE_ATTRIBUTE))


def _without(item: Mapping[str, Any], *names: str) -> dict[str, Any]:
    return {k: v for k, v in item.items() if k not in names}


def verify(stack: StackConfig | None = None, pipeline: PipelineConfig | None = None) -> tuple[SinkReport, ...]:
    stack = stack or StackConfig.from_env()
    pipeline = pipeline or load_pipeline()
    ddb = aws_client("dynamodb", stack, pipeline.region)
    app_table, wp_table = pipeline.table("AppUsers_V2"), pipeline.table("WorkplaceUsers_V2")
    bookkeeping = ("Version", app_table.ttl_attribute, wp_table.ttl_attribute)

    users = {user["UserId"]: user for user in _scan(ddb, "Users")}
    expected_app = {uid: project_user(user) for uid, user in users.items()}
    actual_app = {item["UserId"]: _without(item, "UserId", *bookkeeping) for item in _live(_scan(ddb, app_table.name))}

    # membership items and search documents both keyed by the search app's (unambiguous) document id
    doc_id = template_document_id(load_app("workplace_user_search", pipeline).sink.document_id)
    expected_wp = {doc_id({"WorkplaceId": wid, "UserId": uid}): item
                   for uid, user in users.items() for wid, item in membership_items(user).items()}
    actual_wp = {doc_id(item): _without(item, "WorkplaceId", "UserId", *bookkeeping)
                 for item in _live(_scan(ddb, wp_table.name))}

    (index,) = pipeline.indexes
    search = opensearch_client(stack)
    search.indices.refresh(index=index)
    expected_docs = {doc_id: search_document(item) for doc_id, item in expected_wp.items()}
    actual_docs = {hit["_id"]: _without(hit["_source"], "WorkplaceId", "UserId", "Version")
                   for hit in helpers.scan(search, index=index, query={"query": {"match_all": {}}})}
    return (
        _compare(app_table.name, expected_app, actual_app),
        _compare(wp_table.name, expected_wp, actual_wp),
        _compare(f"opensearch:{index}", expected_docs, actual_docs),
    )


def main() -> int:
    try:
        reports = verify()
    except (EndpointConnectionError, ConnectionError) as exc:
        print(f"verify: cannot reach the stack ({exc}); is it up? (`make up`, `make status`)", file=sys.stderr)
        return 2
    for report in reports:
        print(report)
    return 0 if all(r.ok for r in reports) else 1


if __name__ == "__main__":
    sys.exit(main())
