"""What a read of a dataset returns: bounded whatever the stored row holds.

The bounds are applied when reading, not only when writing, so a row stored before the caps
(or under a raised ``TUNESERVE_MAX_LABELS``) with 200,000 labels still reads small: the read
and each list page show the ``TUNESERVE_DATASET_LABELS_SHOWN`` most frequent labels, and
``GET /v1/datasets/{id}/labels`` pages through all of them.
"""

from __future__ import annotations

import base64
import bisect
import heapq
import json
from itertools import islice
from typing import Any

from app.datasets.orm import Dataset
from app.datasets.schemas import DatasetRead, LabelCount, LabelPage
from app.errors import InvalidInput

#: strings of the report (column names, warnings, errors) are cut to this many characters
REPORT_TEXT_CHARS = 1000
#: and lists of warnings and errors to this many entries
REPORT_NOTES = 50


def dataset_read(dataset: Dataset, *, shown: int) -> DatasetRead:
    labels = list(dataset.labels or [])
    return DatasetRead(
        id=dataset.id,
        name=dataset.name,
        task=dataset.task,
        status=dataset.status,
        format=dataset.format,
        filename=dataset.filename,
        size_bytes=dataset.size_bytes,
        sha256=dataset.sha256,
        num_rows=dataset.num_rows,
        labels=labels[:shown],
        num_labels=len(labels),
        labels_truncated=len(labels) > shown,
        column_mapping=dataset.column_mapping,
        report=bounded_report(dataset.report or {}, shown=shown),
        created_at=dataset.created_at,
    )


def bounded_report(report: dict[str, Any], *, shown: int) -> dict[str, Any]:
    """The stored report with its per-label parts cut to the ``shown`` most frequent labels
    (``label_counts``) and first small classes, and its free texts cut short."""
    out = dict(report)
    counts = report.get("label_counts") or {}
    if isinstance(counts, dict):
        if len(counts) > shown:
            top = heapq.nsmallest(shown, counts.items(), key=_order)
        else:
            top = sorted(counts.items(), key=_order)
        out["label_counts"] = dict(top)
        out["num_labels"] = len(counts)
        out["label_counts_truncated"] = len(counts) > shown
    small = report.get("small_classes")
    if isinstance(small, list):
        out["small_classes"] = small[:shown]
        out["num_small_classes"] = len(small)
    for key, limit in (("columns", None), ("warnings", REPORT_NOTES), ("errors", REPORT_NOTES)):
        values = report.get(key)
        if isinstance(values, list):
            out[key] = [_clip(v) for v in islice(values, limit)]
    return out


def label_page(dataset: Dataset, *, cursor: str | None, limit: int) -> LabelPage:
    """One page of the dataset's label counts, most frequent first, then by name."""
    counts = (dataset.report or {}).get("label_counts") or {}
    items = sorted(counts.items(), key=_order) if isinstance(counts, dict) else []
    start = 0
    if cursor:
        start = bisect.bisect_right(items, _order(_decode(cursor)), key=_order)
    chunk = items[start : start + limit]
    more = start + limit < len(items)
    return LabelPage(
        data=[LabelCount(label=label, count=count) for label, count in chunk],
        next_cursor=_encode(chunk[-1]) if more and chunk else None,
        total=len(items),
    )


def _order(item: tuple[str, int]) -> tuple[int, str]:
    label, count = item
    return -int(count), str(label)


def _clip(value: Any) -> Any:
    if isinstance(value, str) and len(value) > REPORT_TEXT_CHARS:
        return value[: REPORT_TEXT_CHARS - 1] + "…"
    return value


def _encode(item: tuple[str, int]) -> str:
    raw = json.dumps([item[1], item[0]]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode(cursor: str) -> tuple[str, int]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        count, label = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
        if isinstance(count, int) and isinstance(label, str):
            return label, count
    except (ValueError, TypeError, RecursionError):
        pass
    raise InvalidInput("Invalid cursor.", code="invalid_cursor", details={"field": "cursor"})
