"""Validation errors as sentences that name the field and the fix.

FastAPI's errors say where (``body.strategy``) and pydantic's what (``Input tag 'ful' found
using 'name' does not match...``); a person wants both and the way out: ``body.strategy.name:
'ful' is not one of the choices; did you mean 'full'? (choices: full, linear_probe, ...)``.
Malformed JSON is placed by line and column rather than by byte offset. The ``details`` of the
error keep every error as FastAPI reports it (``loc``, ``msg``, ``type``).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from typing import Any

#: errors described in the message (the rest are counted; all are in ``details``)
SHOWN = 3
_QUOTED = re.compile(r"'((?:[^'\\]|\\.)*)'")


def describe(errors: Sequence[dict[str, Any]], body: Any = None) -> str:
    """One message for ``errors`` (pydantic's, as FastAPI collects them)."""
    sentences = [_sentence(error, body) for error in errors[:SHOWN]]
    more = len(errors) - SHOWN
    tail = f" (and {more} more: see details)" if more > 0 else ""
    return "Invalid request: " + "; ".join(sentences) + tail


def _where(loc: Sequence[Any]) -> str:
    return ".".join(str(part) for part in loc) or "body"


def _sentence(error: dict[str, Any], body: Any) -> str:
    kind = str(error.get("type", ""))
    loc = list(error.get("loc", ()))
    ctx = error.get("ctx") or {}
    value = error.get("input")
    if kind == "json_invalid":
        return _json_sentence(loc, ctx, body, str(error.get("msg", "")))
    if kind == "union_tag_invalid":
        field = f"{_where(loc)}.{str(ctx.get('discriminator', 'name')).strip(chr(39))}"
        return _choice_sentence(
            field, ctx.get("tag"), _QUOTED.findall(ctx.get("expected_tags", ""))
        )
    if kind == "union_tag_not_found":
        field = f"{_where(loc)}.{str(ctx.get('discriminator', 'name')).strip(chr(39))}"
        return f"{field} is required (it says which kind this is)"
    if kind in ("literal_error", "enum"):
        return _choice_sentence(_where(loc), value, _QUOTED.findall(ctx.get("expected", "")))
    if kind == "missing":
        return f"{_where(loc)} is required"
    if kind == "extra_forbidden":
        return f"{_where(loc)} is not a field here (remove it, or check its spelling)"
    return f"{_where(loc)}: {error.get('msg', 'invalid')}"


def _choice_sentence(field: str, given: Any, choices: list[str]) -> str:
    shown = ", ".join(choices)
    if not isinstance(given, str):
        return f"{field} must be one of: {shown}"
    close = difflib.get_close_matches(given, choices, n=1, cutoff=0.5)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"{field}: {given!r} is not one of the choices{hint} (choices: {shown})"


def _json_sentence(loc: list[Any], ctx: dict[str, Any], body: Any, msg: str) -> str:
    reason = str(ctx.get("error") or msg or "invalid JSON")
    position = loc[1] if len(loc) > 1 and isinstance(loc[1], int) else None
    if position is not None and isinstance(body, str | bytes):
        text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
        line = text.count("\n", 0, position) + 1
        column = position - (text.rfind("\n", 0, position) + 1) + 1
        return f"the body is not valid JSON: {reason} at line {line}, column {column}"
    return f"the body is not valid JSON: {reason}"
