"""Key scopes, and the scope each route needs.

A key holds one or more scopes:

- ``read``: every ``GET`` (and ``HEAD``) under ``/v1`` except the key list;
- ``train``: the writes that upload, tune and clean up: ``POST``/``DELETE`` on datasets, jobs,
  sweeps and models (predict excepted);
- ``infer``: ``POST /v1/models/{id}/predict``, and nothing else;
- ``admin``: everything, ``/v1/keys`` included.

The rule is decided from the method and the path alone, before a route (or its body) is
touched, so a key without the scope costs a lookup and no more.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from app.errors import InvalidInput

ADMIN, TRAIN, INFER, READ = "admin", "train", "infer", "read"
SCOPES: tuple[str, ...] = (ADMIN, TRAIN, INFER, READ)

_PREDICT = re.compile(r"^/v1/models/[^/]+/predict/?$")
_KEYS = re.compile(r"^/v1/keys(/|$)")
_READ_METHODS = frozenset({"GET", "HEAD"})


def required_scope(method: str, path: str) -> str:
    """The scope a request needs (``admin`` keys have every scope)."""
    if _KEYS.match(path):
        return ADMIN
    if method == "POST" and _PREDICT.match(path):
        return INFER
    if method in _READ_METHODS:
        return READ
    return TRAIN


def allows(granted: Iterable[str], needed: str) -> bool:
    granted = set(granted)
    return ADMIN in granted or needed in granted


def parse_scopes(values: Iterable[str]) -> list[str]:
    """Scopes from user input (``infer``, ``read,train``): known names, deduplicated, in the
    canonical order; ``InvalidInput`` for an unknown one or none at all."""
    wanted = {part.strip() for value in values for part in value.split(",") if part.strip()}
    unknown = sorted(wanted - set(SCOPES))
    if unknown:
        raise InvalidInput(
            f"Unknown scope(s) {', '.join(unknown)}; known scopes: {', '.join(SCOPES)}.",
            code="invalid_scope",
            details={"known": list(SCOPES)},
        )
    if not wanted:
        raise InvalidInput("A key needs at least one scope.", code="invalid_scope")
    return [s for s in SCOPES if s in wanted]


def encode(scopes: Iterable[str]) -> str:
    return ",".join(scopes)


def decode(stored: str) -> tuple[str, ...]:
    return tuple(s for s in stored.split(",") if s)
