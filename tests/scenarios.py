"""Scenarios the stack tests of every target share (tests/e2e on the local stack,
tests/localstack on LocalStack)."""

from __future__ import annotations

import time
from typing import Any

from scripts.changes.model import STATUSES, WORKPLACES


def versionless_edits_within_one_second(users: Any, user_id: str) -> dict[str, Any]:
    """Three edits of one Users item within one whole second, by a writer that keeps no
    ``Version``: consumers order them by ApproximateCreationDateTime alone. Each edit changes
    what every sink holds (the email; a membership added, then one left). Returns the last
    item, which every sink must end at."""
    member = {"Role": "staff", "Title": "Engineer", "JoinedAt": 1_700_000_000}
    first = {
        "UserId": user_id,
        "Email": f"first.{user_id}@example.com",
        "FirstName": "Ada",
        "LastName": "Lovelace",
        "Status": STATUSES[0],
        "Roles": {"member"},
        "Workplaces": {WORKPLACES[0]: member},
        "LastSeenAt": 1_700_000_000,
        "CreatedAt": 1_700_000_000,
        "UpdatedAt": 1_700_000_000,
    }
    second = {
        **first,
        "Email": f"second.{user_id}@example.com",
        "Workplaces": {WORKPLACES[0]: member, WORKPLACES[1]: member},
    }
    third = {
        **second,
        "Email": f"third.{user_id}@example.com",
        "Status": STATUSES[1],
        "Workplaces": {WORKPLACES[1]: member},
    }
    edits = [first, second, third]
    for item in edits:
        item["WorkplaceIds"] = set(item["Workplaces"])
    time.sleep(1 - time.time() % 1 + 0.01)  # just after a second starts
    second_at_start = int(time.time())
    for item in edits:
        users.put_item(Item=item)
    assert int(time.time()) == second_at_start, "the three edits took more than the rest of a second"
    return third
