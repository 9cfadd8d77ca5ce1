"""`make verify` recomputes each sink from the app's own configuration: its source table,
filter and transform (no server: the sinks' read-back is what the stack tests exercise)."""

from __future__ import annotations

from consumers import verify
from consumers.runtime.config import load_app
from consumers.shared.codec import encode_image
from producer_config import load_pipeline

PIPELINE = load_pipeline()


def _as_written(write):
    return tuple(sorted(write.key.items())), dict(write.document)


def test_every_sink_kind_an_app_may_name_can_be_read_back_by_verify():
    from consumers.sinks.registry import KINDS

    assert KINDS and all(callable(kind.read_back) for kind in KINDS.values())


def test_an_app_is_verified_through_its_own_filter_and_transform():
    # GIVEN the Users table: a user with two memberships, one without any
    user = {
        "UserId": "u1",
        "Version": 4,
        "Email": " A@B.org ",
        "FirstName": "Ada",
        "Workplaces": {"w-2": {"Role": "staff", "Title": "Chef", "JoinedAt": 5}, "w-1": {"Role": "owner"}},
        "WorkplaceIds": {"w-1", "w-2"},
    }
    loner = {"UserId": "u2", "Version": 1, "Email": "x@y.z"}
    items = [encode_image(user), encode_image(loner)]
    # WHEN the expected contents of both apps reading Users are computed
    memberships = verify.expected_contents(load_app("workplace_user_v2", PIPELINE), iter(items), _as_written)
    app_users = verify.expected_contents(load_app("app_user_management", PIPELINE), iter(items), _as_written)
    # THEN each follows its own rules: one item per membership (the filter drops the loner) ...
    assert sorted(memberships) == [
        (("UserId", "u1"), ("WorkplaceId", "w-1")),
        (("UserId", "u1"), ("WorkplaceId", "w-2")),
    ]
    assert memberships[(("UserId", "u1"), ("WorkplaceId", "w-2"))] == {
        "Email": "a@b.org",
        "DisplayName": "Ada",
        "Status": "active",
        "Role": "staff",
        "Title": "Chef",
        "JoinedAt": 5,
    }
    # ... and one item per user
    assert app_users[(("UserId", "u2"),)]["DisplayName"] == "x"
    assert len(app_users) == 2


def test_deleted_items_of_the_source_are_not_expected_in_the_sink():
    live = {"WorkplaceId": "w-1", "UserId": "u1", "Version": 3, "Role": "staff"}
    tombstone = {"WorkplaceId": "w-2", "UserId": "u1", "Version": 9, "_cdc_tombstone": True}
    expected = verify.expected_contents(
        load_app("workplace_user_search", PIPELINE), iter([encode_image(live), encode_image(tombstone)]), _as_written
    )
    assert list(expected) == [(("UserId", "u1"), ("WorkplaceId", "w-1"))]
