from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class ExportError(BaseModel):
    code: str = Field(
        description="`artifact_unusable`, `export_unsupported`, `export_failed`, `worker_lost`."
    )
    message: str


class ExportRead(BaseModel):
    """An export a worker builds (a LoRA merge, a head as a full model), while it is built."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    model_id: str
    variant: Literal["merged", "full"] = Field(
        description="`merged`: a `lora` artifact merged into a full model; `full`: a `head` "
        "artifact as the architecture's own classification model."
    )
    status: Literal["queued", "running", "ready", "failed"]
    error: ExportError | None = None
    attempt: int
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
