"""Hyperparameters shared by every strategy, and the metrics a job selects its model by."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from app.contract.strategies import AnyStrategy

#: validation metrics a job can select its checkpoint by (and a sweep can rank by)
SelectionMetric = Literal[
    "val_loss", "val_accuracy", "val_macro_f1", "val_micro_f1", "val_subset_accuracy"
]
#: metrics that exist only for one kind of task
SINGLE_LABEL_METRICS = frozenset({"val_accuracy"})
MULTILABEL_METRICS = frozenset({"val_subset_accuracy"})


#: fields whose value "auto" means the same as leaving them out (the auto rules choose them)
AUTO_STRINGS = frozenset({"epochs", "batch_size", "learning_rate", "max_length", "long_text"})


def metric_mode(metric: str) -> Literal["min", "max"]:
    """Whether lower (losses) or higher (everything else) is better."""
    return "min" if metric.endswith("loss") else "max"


class EarlyStopping(BaseModel):
    """Which evaluation's weights are served, and when training stops early."""

    model_config = ConfigDict(extra="forbid", strict=True)

    enabled: bool = Field(
        True,
        description="Stop when `metric` has not improved by more than `min_delta` for "
        "`patience` evaluations in a row.",
    )
    metric: SelectionMetric = Field(
        "val_loss",
        description="The validation metric that picks the best evaluation (and stops early). "
        "val_accuracy is single-label only; val_subset_accuracy multi-label only.",
    )
    mode: Literal["auto", "min", "max"] = Field(
        "auto", description="'auto': min for losses, max for everything else."
    )
    patience: int = Field(3, ge=1, le=1000, description="Evaluations without improvement.")
    min_delta: float = Field(
        0.0, ge=0.0, le=1.0, description="The smallest change that counts as an improvement."
    )
    restore_best: bool = Field(
        True,
        description="Serve the weights of the best evaluation by `metric` (true), or those of "
        "the last one (false). The job records both.",
    )

    def resolved_mode(self) -> Literal["min", "max"]:
        return metric_mode(self.metric) if self.mode == "auto" else self.mode


class Hyperparameters(BaseModel):
    """Settings shared by every strategy; each is bounded and documented."""

    model_config = ConfigDict(extra="forbid", strict=True)

    epochs: int = Field(
        3,
        ge=1,
        le=100,
        description='Passes over the training split. Left out (or "auto"): chosen from the '
        "data so that the job makes enough optimiser steps (docs/strategies.md, Auto "
        "hyperparameters); the job's `auto` says what was chosen and why.",
    )
    batch_size: int = Field(
        16,
        ge=1,
        le=1024,
        description='Examples per optimisation step. Left out (or "auto"): 8, 16 or 32 by '
        "the size of the data.",
    )
    learning_rate: float | None = Field(
        None,
        gt=0.0,
        le=1.0,
        description='Peak learning rate. Left out (or "auto"): chosen by strategy, data '
        "size, modality and model size. null takes the strategy's fixed default (full 2e-5, "
        "partial and gradual_unfreeze 5e-5, lora 5e-4, linear_probe and the head of "
        "contrastive 1e-2, dann 2e-5, dapt: its downstream strategy's).",
    )
    max_length: int = Field(
        256,
        ge=8,
        le=8192,
        description="Tokens per example window (capped by the model's own maximum); longer "
        'texts are read as `long_text` says. Left out (or "auto"): 256, raised to cover 90% of '
        "the training texts (up to the model's limit) when the audit finds them longer.",
    )
    long_text: Literal["truncate", "head_tail", "chunks"] = Field(
        "truncate",
        description="Texts longer than `max_length` tokens, in training and serving alike: "
        "'truncate' keeps the first tokens; 'head_tail' the first quarter and the last three "
        "quarters of the window; 'chunks' reads up to `max_chunks` consecutive windows and "
        "averages the model's outputs over them (costs up to `max_chunks` times as much). "
        "Single texts only (pairs are truncated). Left out (or \"auto\"): 'head_tail' when the "
        "audit finds 10% or more of the training texts beyond the model's limit, else "
        "'truncate'.",
    )
    max_chunks: int = Field(
        4,
        ge=1,
        le=16,
        description="long_text 'chunks': the most windows read per text (the rest is cut).",
    )
    seed: int = Field(0, ge=0, le=2**31 - 1, description="Seeds the split, init and data order.")
    validation_fraction: float = Field(
        0.1,
        gt=0.0,
        lt=0.5,
        description="Share of the dataset held out, stratified, when no validation dataset is "
        "given.",
    )
    weight_decay: float = Field(0.01, ge=0.0, le=1.0, description="AdamW weight decay.")
    warmup_ratio: float = Field(
        0.1, ge=0.0, le=0.5, description="Share of steps with a linear warmup."
    )
    max_grad_norm: float = Field(
        1.0, gt=0.0, le=100.0, description="Gradient clipping by global norm."
    )
    early_stopping: EarlyStopping = Field(
        default_factory=EarlyStopping,
        description="Selection and early stopping: the served weights are those of the best "
        "evaluation by 'metric'; training stops after 'patience' evaluations without "
        "improvement.",
    )
    eval_every_steps: int | None = Field(
        None,
        ge=1,
        le=10_000_000,
        description="Also evaluate every this many optimisation steps (besides every epoch "
        "end); each evaluation counts for selection and early stopping.",
    )
    random_resized_crop: bool = Field(
        True,
        description="Image tasks: train on a random crop of 35-100% of each image's area "
        "(aspect 3:4 to 4:3), resized back, drawn anew every epoch.",
    )
    horizontal_flip: bool = Field(
        True,
        description="Image tasks: mirror each training image left-right with probability "
        "0.5. Turn it off where a flip changes the label (text in images, left/right arrows).",
    )
    class_weights: Literal["auto"] | dict[str, float] | None = Field(
        None,
        description="Weights of the training loss. 'auto' weights each class by "
        "n / (k * count) (scikit-learn's 'balanced'; for multi-label, each label's positives "
        "by negatives / positives); a mapping gives a weight per label name (missing: 1.0). "
        "Validation loss stays unweighted.",
    )
    temperature_scaling: bool = Field(
        False,
        description="Fit a softmax temperature on the validation set after training and "
        "apply it to served scores (labels are unchanged; scores become calibrated).",
    )
    tune_thresholds: bool = Field(
        True,
        description="Multi-label only: pick each label's decision threshold on the validation "
        "set to maximise its F1, and use those thresholds when serving (else 0.5).",
    )

    @model_validator(mode="before")
    @classmethod
    def _auto_is_left_out(cls, data: Any) -> Any:
        """``"auto"`` for a field :mod:`app.jobs.auto_hyperparameters` chooses is the same as
        leaving it out (``class_weights: "auto"`` is a value of its own: balanced weights)."""
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if not (v == "auto" and k in AUTO_STRINGS)}
        return data

    @field_validator("class_weights")
    @classmethod
    def _positive_weights(
        cls, value: Literal["auto"] | dict[str, float] | None
    ) -> Literal["auto"] | dict[str, float] | None:
        if isinstance(value, dict) and any(not (0.0 < w <= 1000.0) for w in value.values()):
            raise ValueError("class weights must be > 0 and <= 1000")
        return value

    def effective_learning_rate(self, strategy: AnyStrategy) -> float:
        return (
            self.learning_rate
            if self.learning_rate is not None
            else (strategy.default_learning_rate)
        )
