from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator


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

    inputs: list[str | list[str]] | None = Field(
        None,
        min_length=1,
        description="Text models: the texts to classify; for a text-pair model each input is "
        "[text, text_pair]. Inputs longer than the model's maximum length are truncated, not "
        "rejected.",
    )
    images: list[str] | None = Field(
        None,
        min_length=1,
        description="Image models: the images to classify, each a PNG, JPEG, GIF, BMP or WEBP "
        "file as base64 (a `data:image/...;base64,` prefix is allowed). Or send the files as "
        "multipart/form-data in `files`.",
    )
    top_k: int = Field(1, ge=1, le=1000, description="Labels returned per input, best first.")

    @model_validator(mode="after")
    def _one_kind(self) -> PredictRequest:
        if (self.inputs is None) == (self.images is None):
            raise ValueError("give either `inputs` (texts) or `images` (base64 image files)")
        return self


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
