from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.contract.hyperparameters import Hyperparameters
from app.contract.strategies import StrategyConfig
from app.jobs.orm import Job


class JobCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    base_model: str = Field(description="An id from GET /v1/base-models.")
    dataset_id: str = Field(description="A ready dataset of a trainable task.")
    validation_dataset_id: str | None = Field(
        None,
        description="Optional dataset of the same task used for validation; without it a "
        "stratified, seeded share of the dataset is held out.",
    )
    test_dataset_id: str | None = Field(
        None,
        description="Optional held-out dataset of the same task, evaluated once at the end "
        "with the selected weights (never used for selection).",
    )
    strategy: StrategyConfig = Field(description="The transfer-learning strategy, by name.")
    hyperparameters: Hyperparameters = Field(default_factory=Hyperparameters)


class AuditFinding(BaseModel):
    """One finding of the pre-flight audit at submit (``app.audit``)."""

    code: str = Field(
        description="class_imbalance, leakage, leakage_risk, few_examples, too_small or long_texts."
    )
    severity: Literal["info", "warning", "fatal"] = Field(
        description="info: a note; warning: the job runs but something is probably off; "
        "fatal: the job would be meaningless, so the submit was refused (422 audit_failed)."
    )
    message: str = Field(description="What was found, with the numbers.")
    suggestion: str | None = Field(None, description="What to change, when there is a fix.")
    data: dict[str, Any] = Field(
        default_factory=dict, description="The numbers behind the message, per code."
    )


class AutoChoice(BaseModel):
    """A hyperparameter the request left to ``auto``, as chosen at submit."""

    field: str = Field(description="The hyperparameter (epochs, batch_size, learning_rate, ...).")
    value: Any = Field(description="What was chosen.")
    reason: str = Field(description="Why, with the numbers the rule read.")


class Progress(BaseModel):
    phase: str | None = Field(
        None,
        description="A phase before training ('extracting_features' for linear_probe's one "
        "pass, contrastive's pairs, dapt's MLM), then 'training'.",
    )
    phase_done: int | None = Field(None, description="Examples done in the current phase.")
    phase_total: int | None = None
    epoch: float = 0
    step: int = 0
    total_steps: int | None = None
    percent: float = Field(
        0.0, description="Of the current phase: it starts again at 0 when training begins."
    )
    eta_seconds: float | None = Field(
        None, description="Seconds left in the current phase, from this attempt's rate."
    )


class JobError(BaseModel):
    code: str
    message: str


class Selection(BaseModel):
    """Which evaluation's weights the job's model holds, and what the last one scored."""

    metric: str
    mode: str
    selected_epoch: float = Field(description="Epoch (fractional for step evaluations).")
    selected_step: int
    selected: dict[str, float] = Field(description="Validation metrics of the served weights.")
    last_epoch: float
    last_step: int
    last: dict[str, float] = Field(description="Validation metrics of the last evaluation.")
    stopped_early: bool
    evaluations: int
    bakeoff: dict[str, Any] | None = Field(
        None,
        description="The auto strategy: its bake-off (rank metric, every candidate's run, the "
        "winner, and which run is served); null for the other strategies.",
    )


class JobRead(BaseModel):
    id: str
    status: str
    base_model: str
    task: str
    dataset_id: str
    validation_dataset_id: str | None
    test_dataset_id: str | None
    sweep_id: str | None
    strategy: dict[str, Any]
    hyperparameters: dict[str, Any]
    progress: Progress
    metrics: dict[str, Any]
    selection: Selection | None
    audit: list[AuditFinding] = Field(
        default_factory=list,
        description="Warnings and notes of the pre-flight audit of the job's data at submit "
        "(docs/datasets.md); also in the job's events, kind 'audit'.",
    )
    auto: list[AutoChoice] = Field(
        default_factory=list,
        description='The hyperparameters the request left out (or set to "auto"), as '
        "chosen from the data, with the reason for each; `hyperparameters` holds them too.",
    )
    model_id: str | None
    error: JobError | None
    attempt: int
    max_attempts: int
    cancel_requested: bool
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    @classmethod
    def from_row(cls, job: Job) -> JobRead:
        error = (
            JobError(code=job.error_code, message=job.error_message or "")
            if job.error_code
            else None
        )
        return cls(
            id=job.id,
            status=job.status,
            base_model=job.base_model,
            task=job.task,
            dataset_id=job.dataset_id,
            validation_dataset_id=job.validation_dataset_id,
            test_dataset_id=job.test_dataset_id,
            sweep_id=job.sweep_id,
            strategy=job.strategy,
            hyperparameters=job.hyperparameters,
            progress=Progress.model_validate(job.progress or {}),
            metrics=job.metrics or {},
            selection=Selection.model_validate(job.selection) if job.selection else None,
            audit=[AuditFinding.model_validate(f) for f in job.audit or []],
            auto=[AutoChoice.model_validate(c) for c in job.auto or []],
            model_id=job.model_id,
            error=error,
            attempt=job.attempt,
            max_attempts=job.max_attempts,
            cancel_requested=job.cancel_requested,
            created_at=job.created_at,
            started_at=job.started_at,
            finished_at=job.finished_at,
        )


class JobList(BaseModel):
    data: list[JobRead]
    next_cursor: str | None = None


class JobEventRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    kind: str
    message: str
    data: dict[str, Any] | None
    created_at: datetime


class JobEventList(BaseModel):
    data: list[JobEventRead]
    next_cursor: str | None = Field(
        None, description="Pass as `after` to get the next page (events are oldest first)."
    )


class MetricPoint(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    split: str
    epoch: float
    step: int
    values: dict[str, float]
    created_at: datetime


class JobMetrics(BaseModel):
    job_id: str
    series: list[MetricPoint]
