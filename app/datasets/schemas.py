from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field


class DatasetRead(BaseModel):
    id: str
    name: str
    task: str
    status: str
    format: str
    filename: str
    size_bytes: int
    sha256: str
    num_rows: int
    labels: list[str] = Field(
        description="The label names, sorted; at most TUNESERVE_DATASET_LABELS_SHOWN of them "
        "(see `labels_truncated` and GET /v1/datasets/{id}/labels)."
    )
    num_labels: int = Field(description="How many distinct labels the dataset has.")
    labels_truncated: bool = Field(description="True when `labels` does not show them all.")
    column_mapping: dict[str, Any]
    report: dict[str, Any] = Field(
        description="The validation report (see docs/datasets.md); `label_counts` holds the "
        "most frequent labels only, with `label_counts_truncated` when there are more."
    )
    created_at: datetime


class DatasetList(BaseModel):
    data: list[DatasetRead]
    next_cursor: str | None = None


class LabelCount(BaseModel):
    label: str
    count: int = Field(description="Examples with the label (multi-label: occurrences).")


class LabelPage(BaseModel):
    data: list[LabelCount] = Field(description="Most frequent first, then by name.")
    next_cursor: str | None = None
    total: int = Field(description="Distinct labels of the dataset.")


class TruncatedCell(BaseModel):
    row: int = Field(description="Index of the row in `rows`.")
    column: str
    length: int = Field(description="The cell's full length: characters, or items of a list.")


class DatasetPreview(BaseModel):
    id: str
    columns: list[str]
    rows: list[dict[str, Any]]
    total_rows: int
    truncated_cells: list[TruncatedCell] = Field(
        default_factory=list,
        description="Cells cut to TUNESERVE_PREVIEW_CELL_CHARS characters (lists: to the items "
        "that fit); each is shown as its beginning.",
    )
