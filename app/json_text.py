"""JSON read back from the database is always text that can be sent.

Python's ``json`` turns ``"\\ud800"`` into a ``str`` with a lone surrogate, which no response
can encode. The API refuses such JSON at the door (:mod:`app.middleware.body`), but a row
written before that (or by a path that does not go through the API) must still be readable:
every JSON column is read through :func:`loads`, which replaces a lone surrogate with U+FFFD.
"""

from __future__ import annotations

import json
import re
from typing import Any

_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def loads(text: str | bytes) -> Any:
    value = json.loads(text)
    probe = text if isinstance(text, str) else text.decode("utf-8", "replace")
    if _SURROGATE_ESCAPE.search(probe):
        return _clean(value)
    return value


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        return _text(value)
    if isinstance(value, list):
        return [_clean(item) for item in value]
    if isinstance(value, dict):
        return {_text(key): _clean(item) for key, item in value.items()}
    return value


def _text(value: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return value.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    return value
