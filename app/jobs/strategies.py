"""Strategy configs and hyperparameters: the REST contract of ``POST /v1/jobs``.

A strategy is a pydantic model with a literal ``name``; ``StrategyConfig`` is the discriminated
union of all of them. The implementations live in ``worker/strategies/`` and are registered
under the same names (a test asserts the two sets are equal).
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

TextTask = Literal[
    "text-classification", "text-multilabel", "text-pair-classification", "unlabeled-text"
]


class _Strategy(BaseModel):
    model_config = ConfigDict(extra="forbid")

    #: tasks the strategy can train on
    supported_tasks: ClassVar[frozenset[str]] = frozenset(
        {"text-classification", "text-multilabel", "text-pair-classification"}
    )
    #: learning rate used when ``hyperparameters.learning_rate`` is not given
    default_learning_rate: ClassVar[float] = 2e-5


class FullStrategy(_Strategy):
    """Every weight trains: AdamW, warmup then linear decay, gradient clipping."""

    name: Literal["full"] = "full"
    layerwise_lr_decay: float = Field(
        1.0,
        gt=0.0,
        le=1.0,
        description=(
            "Layer-wise learning-rate decay. The head and top layer get the full learning rate; "
            "each layer below gets the rate of the layer above times this factor (embeddings "
            "last). 1.0 turns it off; 0.8-0.95 is typical."
        ),
    )


class LinearProbeStrategy(_Strategy):
    """Frozen backbone as a feature extractor; features computed once; a new head trained."""

    name: Literal["linear_probe"] = "linear_probe"
    default_learning_rate: ClassVar[float] = 1e-2
    pooling: Literal["auto", "mean", "cls", "pooler"] = Field(
        "auto",
        description=(
            "How token states become one feature vector. 'auto' pools the way the base was "
            "trained: a sentence-transformers directory says so in 1_Pooling/config.json "
            "(all-MiniLM-L6-v2: mean); otherwise the [CLS] state."
        ),
    )


StrategyConfig = Annotated[FullStrategy | LinearProbeStrategy, Field(discriminator="name")]

STRATEGY_NAMES: frozenset[str] = frozenset({"full", "linear_probe"})


class Hyperparameters(BaseModel):
    """Settings shared by every strategy; each is bounded and documented."""

    model_config = ConfigDict(extra="forbid")

    epochs: int = Field(3, ge=1, le=100, description="Passes over the training split.")
    batch_size: int = Field(16, ge=1, le=1024, description="Examples per optimisation step.")
    learning_rate: float | None = Field(
        None,
        gt=0.0,
        le=1.0,
        description="Peak learning rate; null takes the strategy's default "
        "(full: 2e-5, linear_probe: 1e-2).",
    )
    max_length: int = Field(
        256,
        ge=8,
        le=8192,
        description="Tokens per example; longer inputs are truncated (also capped by the "
        "model's own maximum).",
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

    def effective_learning_rate(self, strategy: FullStrategy | LinearProbeStrategy) -> float:
        return (
            self.learning_rate
            if self.learning_rate is not None
            else (strategy.default_learning_rate)
        )
