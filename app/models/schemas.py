from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class ModelRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    job_id: str
    base_model: str
    task: str
    strategy: str
    labels: list[str]
    metrics: dict[str, Any]
    size_bytes: int
    created_at: datetime


class ModelList(BaseModel):
    data: list[ModelRead]
    next_cursor: str | None = None


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    inputs: list[str | list[str]] = Field(
        min_length=1,
        description="Texts to classify; for a text-pair model each input is [text, text_pair]. "
        "Inputs longer than the model's maximum length are truncated, not rejected.",
    )
    top_k: int = Field(1, ge=1, le=1000, description="Labels returned per input, best first.")


class LabelScore(BaseModel):
    label: str
    score: float


class Prediction(BaseModel):
    label: str
    score: float
    top_k: list[LabelScore]
    labels: list[str] | None = Field(
        None, description="Multi-label models: every label over its threshold."
    )


class PredictResponse(BaseModel):
    model_id: str
    predictions: list[Prediction]
