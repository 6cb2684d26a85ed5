"""Strategy configs and hyperparameters: the REST contract of ``POST /v1/jobs``.

A strategy is a pydantic model with a literal ``name``; ``StrategyConfig`` is the discriminated
union of all of them. The implementations live in ``worker/strategies/`` and are registered
under the same names (a test asserts the two sets are equal).
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

TextTask = Literal[
    "text-classification", "text-multilabel", "text-pair-classification", "unlabeled-text"
]
LABELED_TEXT_TASKS = frozenset(
    {"text-classification", "text-multilabel", "text-pair-classification"}
)


class _Strategy(BaseModel):
    model_config = ConfigDict(extra="forbid")

    #: tasks the strategy can train on
    supported_tasks: ClassVar[frozenset[str]] = LABELED_TEXT_TASKS
    #: learning rate used when ``hyperparameters.learning_rate`` is not given
    default_learning_rate: ClassVar[float] = 2e-5
    #: fields naming another dataset the job needs, and the task that dataset must have
    aux_datasets: ClassVar[dict[str, str]] = {}

    def aux_dataset_ids(self) -> dict[str, str]:
        """``{field: dataset_id}`` of the other datasets this strategy reads."""
        return {f: str(getattr(self, f)) for f in self.aux_datasets if getattr(self, f, None)}


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


class PartialStrategy(_Strategy):
    """Embeddings and lower layers frozen; the top ``trainable_layers`` and the head train."""

    name: Literal["partial"] = "partial"
    default_learning_rate: ClassVar[float] = 5e-5
    trainable_layers: int = Field(
        2,
        ge=0,
        le=128,
        description="Encoder layers, counted from the top, that train with the head; the "
        "embeddings and every layer below stay frozen (bit-identical). 0 trains the head (and "
        "pooler) only; more than the model has trains every layer but the embeddings.",
    )


class GradualUnfreezeStrategy(_Strategy):
    """ULMFiT: the head first, then one more layer group every few epochs, top down."""

    name: Literal["gradual_unfreeze"] = "gradual_unfreeze"
    default_learning_rate: ClassVar[float] = 5e-5
    unfreeze_every: int = Field(
        1,
        ge=1,
        le=100_000,
        description="How many epochs (or steps, see unfreeze_unit) each phase lasts before "
        "the next layer group, from the top down, joins training (embeddings last).",
    )
    unfreeze_unit: Literal["epoch", "step"] = Field(
        "epoch", description="Whether unfreeze_every counts epochs or optimisation steps."
    )
    lr_decay_factor: float = Field(
        2.6,
        ge=1.0,
        le=100.0,
        description="Discriminative learning rates: each lower layer group's rate is the rate "
        "of the group above divided by this factor (ULMFiT's 2.6). 1.0 turns it off.",
    )
    slanted_triangular: bool = Field(
        True,
        description="ULMFiT's slanted-triangular schedule (a short linear rise over cut_frac "
        "of the steps, then a long linear decay) instead of warmup + linear decay.",
    )
    cut_frac: float = Field(
        0.1, gt=0.0, lt=1.0, description="Share of steps spent rising (slanted triangular)."
    )


class LoraStrategy(_Strategy):
    """PEFT LoRA adapters on the attention projections plus a trained head; base frozen."""

    name: Literal["lora"] = "lora"
    default_learning_rate: ClassVar[float] = 5e-4
    r: int = Field(8, ge=1, le=256, description="Rank of the LoRA update matrices.")
    alpha: int = Field(
        16, ge=1, le=1024, description="LoRA scaling numerator: updates are scaled by alpha/r."
    )
    dropout: float = Field(0.1, ge=0.0, lt=1.0, description="Dropout on the LoRA branch input.")
    target_modules: list[str] | None = Field(
        None,
        min_length=1,
        description="Module names to adapt; null picks a sensible default per architecture "
        "(BERT family: query and value projections).",
    )


class DannStrategy(_Strategy):
    """Domain-adversarial adaptation (Ganin & Lempitsky 2015) to an unlabeled target domain."""

    name: Literal["dann"] = "dann"
    supported_tasks: ClassVar[frozenset[str]] = frozenset({"text-classification"})
    aux_datasets: ClassVar[dict[str, str]] = {"target_dataset_id": "unlabeled-text"}
    target_dataset_id: str = Field(
        description="An unlabeled-text dataset from the target domain (required)."
    )
    domain_loss_weight: float = Field(
        1.0,
        gt=0.0,
        le=10.0,
        description="Final weight of the reversed domain gradient; the weight ramps up as "
        "weight * (2 / (1 + exp(-gamma * p)) - 1) over training progress p.",
    )
    gamma: float = Field(10.0, gt=0.0, le=100.0, description="Steepness of that ramp.")


class DaptStrategy(_Strategy):
    """Continued masked-LM pretraining on in-domain text, then a downstream strategy."""

    name: Literal["dapt"] = "dapt"
    aux_datasets: ClassVar[dict[str, str]] = {"unlabeled_dataset_id": "unlabeled-text"}
    unlabeled_dataset_id: str = Field(
        description="An unlabeled-text dataset of in-domain text for the masked-LM phase."
    )
    mlm_steps: int = Field(
        500, ge=1, le=1_000_000, description="Optimisation steps of masked-LM training."
    )
    mlm_probability: float = Field(
        0.15,
        gt=0.0,
        lt=1.0,
        description="Share of tokens masked (of those: 80% [MASK], 10% random, 10% kept).",
    )
    mlm_learning_rate: float = Field(
        5e-5, gt=0.0, le=1.0, description="Peak learning rate of the masked-LM phase."
    )
    then: Literal["full", "partial", "lora", "linear_probe"] = Field(
        "full",
        description="The downstream strategy run on the adapted encoder in the same job, "
        "with its default settings and the job's hyperparameters.",
    )


class ContrastiveStrategy(_Strategy):
    """SetFit-style few-shot: contrastive pair fine-tuning of the encoder, then a head."""

    name: Literal["contrastive"] = "contrastive"
    supported_tasks: ClassVar[frozenset[str]] = frozenset({"text-classification"})
    num_pairs: int = Field(
        2000,
        ge=10,
        le=200_000,
        description="Positive and negative pairs sampled (half each, bounded; never all "
        "O(n^2) pairs) for the contrastive phase.",
    )
    pair_epochs: int = Field(
        1, ge=1, le=20, description="Passes over the sampled pairs (cosine-similarity loss)."
    )
    pair_learning_rate: float = Field(
        2e-5, gt=0.0, le=1.0, description="Learning rate of the contrastive phase."
    )
    default_learning_rate: ClassVar[float] = 1e-2


StrategyConfig = Annotated[
    FullStrategy
    | LinearProbeStrategy
    | PartialStrategy
    | GradualUnfreezeStrategy
    | LoraStrategy
    | DannStrategy
    | DaptStrategy
    | ContrastiveStrategy,
    Field(discriminator="name"),
]
AnyStrategy = (
    FullStrategy
    | LinearProbeStrategy
    | PartialStrategy
    | GradualUnfreezeStrategy
    | LoraStrategy
    | DannStrategy
    | DaptStrategy
    | ContrastiveStrategy
)

STRATEGY_NAMES: frozenset[str] = frozenset(
    {
        "full",
        "linear_probe",
        "partial",
        "gradual_unfreeze",
        "lora",
        "dann",
        "dapt",
        "contrastive",
    }
)


#: validation metrics a job can select its checkpoint by (and a sweep can rank by)
SelectionMetric = Literal[
    "val_loss", "val_accuracy", "val_macro_f1", "val_micro_f1", "val_subset_accuracy"
]
#: metrics that exist only for one kind of task
SINGLE_LABEL_METRICS = frozenset({"val_accuracy"})
MULTILABEL_METRICS = frozenset({"val_subset_accuracy"})


def metric_mode(metric: str) -> Literal["min", "max"]:
    """Whether lower (losses) or higher (everything else) is better."""
    return "min" if metric.endswith("loss") else "max"


class EarlyStopping(BaseModel):
    """Which evaluation's weights are served, and when training stops early."""

    model_config = ConfigDict(extra="forbid")

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

    model_config = ConfigDict(extra="forbid")

    epochs: int = Field(3, ge=1, le=100, description="Passes over the training split.")
    batch_size: int = Field(16, ge=1, le=1024, description="Examples per optimisation step.")
    learning_rate: float | None = Field(
        None,
        gt=0.0,
        le=1.0,
        description="Peak learning rate; null takes the strategy's default "
        "(full 2e-5, partial and gradual_unfreeze 5e-5, lora 5e-4, linear_probe and the "
        "head of contrastive 1e-2, dann 2e-5, dapt: its downstream strategy's).",
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
