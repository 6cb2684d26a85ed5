from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class DatasetRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str
    task: str
    status: str
    format: str
    filename: str
    size_bytes: int
    sha256: str
    num_rows: int
    labels: list[str]
    column_mapping: dict[str, Any]
    report: dict[str, Any] = Field(description="The validation report (see docs/datasets.md).")
    created_at: datetime


class DatasetList(BaseModel):
    data: list[DatasetRead]
    next_cursor: str | None = None


class DatasetPreview(BaseModel):
    id: str
    columns: list[str]
    rows: list[dict[str, Any]]
    total_rows: int
