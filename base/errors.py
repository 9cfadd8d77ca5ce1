"""The root of the project's one exception hierarchy.

Every error we raise derives from :class:`CdcError`, carries the context needed to act on it
(which record, which field, which component, which file) and is raised ``from`` its cause. The
layers add their own subclasses (the core's record and sink errors, the configuration's
``ConfigError``, the services' ``StackError``); they all import the root from here, the bottom
layer, so no layer imports upward for it.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = ["CdcError", "closest"]


class CdcError(Exception):
    """Base class of every error this project raises on purpose."""


def closest(name: str, choices: Iterable[str]) -> str:
    """``did you mean 'x'? `` for the choice nearest to a misspelt ``name``, else "": the hint of
    every "unknown key / variable" error."""
    close = difflib.get_close_matches(name, list(choices), n=1)
    return f"did you mean {close[0]!r}? " if close else ""
