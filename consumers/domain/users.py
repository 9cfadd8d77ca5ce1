"""The user profile: how a `Users` item's identity fields are presented wherever they are copied.

One rule for every app that projects a user (`app_user_management` into AppUsers_V2,
`workplace_user_v2` into each membership item), so the two sinks can never disagree:

* ``Email`` lower-cased and trimmed;
* ``DisplayName`` = "FirstName LastName" (trimmed; the e-mail's local part when both are empty);
* ``Status`` lower-cased, ``active`` when absent.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["PROFILE_ATTRIBUTES", "user_profile"]

#: the `Users` attributes the profile reads
PROFILE_ATTRIBUTES = ("Email", "FirstName", "LastName", "Status")


def user_profile(user: Mapping[str, Any]) -> dict[str, Any]:
    email = str(user.get("Email") or "").strip().lower()
    name = f"{user.get('FirstName') or ''} {user.get('LastName') or ''}".strip()
    return {
        "Email": email,
        "DisplayName": name or email.partition("@")[0],
        "Status": str(user.get("Status") or "active").lower(),
    }
