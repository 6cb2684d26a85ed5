"""Sweep requests and answers: a strategy bake-off on one split, ranked by one metric."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, model_validator

from app.contract.hyperparameters import Hyperparameters, SelectionMetric
from app.contract.strategies import AnyStrategy, StrategyConfig
from app.jobs.orm import Job
from app.models.orm import Model
from app.sweeps.orm import Sweep

#: candidates (strategies x learning rates) one sweep may train
MAX_CANDIDATES = 24
#: each strategy's default learning rate, by API name
_DEFAULT_LEARNING_RATES: dict[str, float] = {
    str(cls.model_fields["name"].default): cls.default_learning_rate
    for cls in get_args(AnyStrategy)
}


class SweepCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    base_model: str = Field(description="An id from GET /v1/base-models.")
    dataset_id: str = Field(description="A ready dataset of a trainable task.")
    validation_dataset_id: str | None = Field(
        None,
        description="Optional validation dataset of the same task. Without it every candidate "
        "holds out the same stratified, seeded share of the dataset (same seed and "
        "validation_fraction), so all are ranked on one split.",
    )
    test_dataset_id: str | None = Field(
        None,
        description="Optional test dataset, evaluated once per candidate with its selected "
        "weights; reported beside the ranking, never used for it.",
    )
    strategies: list[StrategyConfig] = Field(
        min_length=1, max_length=8, description="The strategies to compare (1 to 8)."
    )
    learning_rates: list[Annotated[float, Field(gt=0.0, le=1.0)]] | None = Field(
        None,
        min_length=1,
        max_length=5,
        description="Optional learning rates (1 to 5, each in (0, 1]); the candidates are "
        "every strategy at every rate. Without it each strategy trains once at the rate "
        "`auto` chooses for it (or at hyperparameters.learning_rate). At most 24 candidates "
        "in all.",
    )
    hyperparameters: Hyperparameters = Field(
        default_factory=Hyperparameters,
        description="Shared by every candidate. Unless early_stopping is given, each "
        "candidate selects its served checkpoint by the sweep's metric.",
    )
    metric: SelectionMetric = Field(
        "val_macro_f1",
        description="The validation metric candidates are ranked by (min for val_loss, max "
        "for the others). val_accuracy is single-label only; val_subset_accuracy multi-label "
        "only.",
    )

    @model_validator(mode="after")
    def _candidates(self) -> SweepCreate:
        if self.learning_rates is not None and self.hyperparameters.learning_rate is not None:
            raise ValueError(
                "give either learning_rates or hyperparameters.learning_rate, not both"
            )
        if any(s.name == "auto" for s in self.strategies):
            raise ValueError(
                "'auto' runs a bake-off of its own: submit it as a job (POST /v1/jobs), "
                "or list the strategies to compare here"
            )
        count = len(self.strategies) * len(self.learning_rates or [None])
        if count > MAX_CANDIDATES:
            raise ValueError(
                f"{count} candidates (strategies x learning_rates); at most {MAX_CANDIDATES}"
            )
        return self


class LeaderboardEntry(BaseModel):
    rank: int | None = Field(
        description="1-based rank among succeeded candidates that reported the metric; null "
        "for the others."
    )
    job_id: str
    strategy: str
    learning_rate: float = Field(description="The effective peak learning rate.")
    status: str
    value: float | None = Field(
        description="The sweep metric of the served (selected) checkpoint; for an unfinished "
        "job, its latest value."
    )
    selected_epoch: float | None = None
    metrics: dict[str, float] = Field(description="Validation metrics of the served weights.")
    test_metrics: dict[str, float] | None = Field(
        None, description="test_* metrics, when the sweep has a test dataset."
    )
    wall_seconds: float | None = Field(None, description="finished_at - started_at.")
    trainable_parameters: int | None = None
    artifact_bytes: int | None = Field(None, description="Size of the model's artifact.")
    model_id: str | None = None
    error_code: str | None = None

    @classmethod
    def from_job(
        cls,
        job: Job,
        *,
        rank: int | None,
        value: float | None,
        wall_seconds: float | None,
        model: Model | None,
    ) -> LeaderboardEntry:
        selection = job.selection or {}
        test_metrics = {
            k: n
            for k, v in (job.metrics or {}).items()
            if k.startswith("test_") and (n := number(v)) is not None
        }
        trainable = number((job.metrics or {}).get("trainable_parameters"))
        return cls(
            rank=rank,
            job_id=job.id,
            strategy=str(job.strategy.get("name")),
            learning_rate=effective_learning_rate(job),
            status=job.status,
            value=value,
            selected_epoch=number(selection.get("selected_epoch")),
            metrics=selected_metrics(job),
            test_metrics=test_metrics or None,
            wall_seconds=wall_seconds,
            trainable_parameters=int(trainable) if trainable is not None else None,
            artifact_bytes=model.size_bytes if model else None,
            model_id=job.model_id,
            error_code=job.error_code,
        )


class SweepRead(BaseModel):
    id: str
    status: Literal["running", "succeeded", "failed", "cancelled"]
    metric: str
    mode: Literal["min", "max"]
    base_model: str
    dataset_id: str
    validation_dataset_id: str | None
    test_dataset_id: str | None
    request: dict[str, Any] = Field(
        description="The request with the shared hyperparameters as the candidates got them."
    )
    winner_job_id: str | None
    model_id: str | None = Field(description="The promoted model: the winner's.")
    created_at: datetime
    finished_at: datetime | None
    leaderboard: list[LeaderboardEntry] = Field(
        description="One entry per candidate: succeeded by rank (ties: shorter wall time "
        "first), then unfinished, then failed and cancelled."
    )

    @classmethod
    def from_row(cls, sweep: Sweep, leaderboard: list[LeaderboardEntry]) -> SweepRead:
        fields = {f: getattr(sweep, f) for f in cls.model_fields if f != "leaderboard"}
        return cls.model_validate({**fields, "leaderboard": leaderboard})


class SweepList(BaseModel):
    data: list[SweepRead]
    next_cursor: str | None = None


def number(value: Any) -> float | None:
    """A finite number from a JSON value, else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def selected_metrics(job: Job) -> dict[str, float]:
    """Validation metrics of the served weights (the latest ones before ``selection`` exists)."""
    if job.selection:
        source = job.selection.get("selected") or {}
    else:
        source = {k: v for k, v in (job.metrics or {}).items() if k.startswith("val_")}
    return {k: n for k, v in source.items() if (n := number(v)) is not None}


def effective_learning_rate(job: Job) -> float:
    """The job's explicit learning rate, else its strategy's default (dapt: the downstream
    strategy's)."""
    explicit = number(job.hyperparameters.get("learning_rate"))
    if explicit is not None:
        return explicit
    name = str(job.strategy.get("name"))
    if name == "dapt":
        name = str(job.strategy.get("then", "full"))
    return _DEFAULT_LEARNING_RATES.get(name, _DEFAULT_LEARNING_RATES["full"])
