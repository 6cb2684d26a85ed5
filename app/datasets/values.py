"""Turning a raw cell of an upload into a canonical value of its kind, within the caps.

A reader gives each cell as it decoded it (CSV: ``str``; JSONL and Parquet: the Python value,
``None`` for null). By kind (the kinds of :data:`app.datasets.canonical.TASK_COLUMNS`):

- ``text``: a string, stored exactly as given; its size was checked by the reader.
- ``label``: a string, stripped of surrounding spaces; ints and bools become strings
  (``3`` -> ``"3"``, ``true`` -> ``"true"``, integral floats ``3.0`` -> ``"3"``); other
  numbers, lists and objects are fatal. A string label's length is checked
  against ``MAX_LABEL_CHARS``.
- ``labels`` (multi-label): a JSON list (JSONL, Parquet ``list<string>``), or a string holding
  either ``a|b|c`` (``|`` is the only separator: commas and semicolons belong to the label) or
  a JSON list ``["a", "b"]``; each item is read as a ``label``, repeats dropped. An explicit
  empty list ``[]`` is kept as no labels; an empty cell is missing.

``None`` means missing: null or absent, blank (whitespace only), or a NaN label. A value of the
wrong type raises :class:`~app.datasets.failures.IngestFailure` saying where.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

from app.datasets.failures import IngestFailure, json_type
from app.datasets.limits import IngestLimits

Value = str | tuple[str, ...]


def canonical_value(
    kind: str, value: Any, where: str, column: str, limits: IngestLimits
) -> Value | None:
    """``value`` (the cell of ``column`` at ``where``) as the canonical ``kind``, or ``None``
    when it is missing."""
    return _CONVERTERS[kind](value, where, column, limits)


def _text(value: Any, where: str, column: str, limits: IngestLimits) -> str | None:
    """A text; its size was checked by the reader."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise IngestFailure(f"{where}: {column!r} must be a string, got {json_type(value)}")
    return value if value.strip() else None


def _label(value: Any, where: str, column: str, limits: IngestLimits) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if value.is_integer():
            return str(int(value))
        raise IngestFailure(
            f"{where}: {column!r} is the number {value}; labels must be strings or integers"
        )
    if isinstance(value, str):
        label = value.strip()
        limits.label(label, where=where, column=column)
        return label or None
    hint = " (for several labels a row use the task text-multilabel)" if value else ""
    raise IngestFailure(
        f"{where}: {column!r} must be a string or an integer, got {json_type(value)}{hint}"
    )


def _labels(value: Any, where: str, column: str, limits: IngestLimits) -> tuple[str, ...] | None:
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                value = json.loads(text)
            except (ValueError, RecursionError):
                raise IngestFailure(f"{where}: {column!r} is not a valid JSON list") from None
            if not isinstance(value, list):
                raise IngestFailure(f"{where}: {column!r} is not a valid JSON list")
        else:
            value = [part for part in text.split("|") if part.strip()] or None
    if isinstance(value, bool | int):
        value = [value]
    if value is None or isinstance(value, list | tuple):
        if value is None:
            return None
        labels: dict[str, None] = {}
        for item in value:
            if isinstance(item, list | tuple | dict):
                raise IngestFailure(
                    f"{where}: {column!r} must be a list of strings; it holds {json_type(item)}"
                )
            label = _label(item, where, column, limits)
            if label is not None:
                labels[label] = None
        return tuple(labels)
    raise IngestFailure(
        f"{where}: {column!r} must be a list of labels or a string 'a|b', got {json_type(value)}"
    )


_CONVERTERS: dict[str, Callable[[Any, str, str, IngestLimits], Value | None]] = {
    "text": _text,
    "label": _label,
    "labels": _labels,
}
