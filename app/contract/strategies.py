"""Strategy configs: the ``strategy`` object of ``POST /v1/jobs`` and of sweeps.

A strategy is a pydantic model with a literal ``name``; ``AnyStrategy`` is the union of all of
them and ``StrategyConfig`` the discriminated union the API validates. The names are derived
from that union once (:data:`STRATEGY_CONFIGS`); the implementations live in
``worker/strategies/`` and register under the same names (a test asserts the two sets are
equal).
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator

from app.contract.tasks import (
    IMAGE_CLASSIFICATION,
    LABELED_TASKS,
    LABELED_TEXT_TASKS,
    TEXT_CLASSIFICATION,
    UNLABELED_TEXT,
)


class _Strategy(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    #: tasks the strategy can train on (text and image classification unless it says)
    supported_tasks: ClassVar[frozenset[str]] = LABELED_TASKS
    #: learning rate used when ``hyperparameters.learning_rate`` is not given
    default_learning_rate: ClassVar[float] = 2e-5
    #: fields naming another dataset the job needs, and the task that dataset must have
    aux_datasets: ClassVar[dict[str, str]] = {}
    #: trains a masked-LM head on the base, which only encoders have (not GPT-style decoders)
    needs_masked_lm: ClassVar[bool] = False
    #: needs an image-text base with its text tower and tokenizer (CLIP)
    needs_zero_shot: ClassVar[bool] = False

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
    pooling: Literal["auto", "mean", "cls", "pooler", "last"] = Field(
        "auto",
        description=(
            "How token states become one feature vector. 'auto' pools the way the base was "
            "trained: a sentence-transformers directory says so in 1_Pooling/config.json "
            "(all-MiniLM-L6-v2: mean); a decoder (GPT-2 style) pools its last real token "
            "('last'); otherwise the [CLS] state."
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
    supported_tasks: ClassVar[frozenset[str]] = frozenset({TEXT_CLASSIFICATION})
    aux_datasets: ClassVar[dict[str, str]] = {"target_dataset_id": UNLABELED_TEXT}
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
    supported_tasks: ClassVar[frozenset[str]] = LABELED_TEXT_TASKS  # masked-LM: text only
    needs_masked_lm: ClassVar[bool] = True
    aux_datasets: ClassVar[dict[str, str]] = {"unlabeled_dataset_id": UNLABELED_TEXT}
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
    supported_tasks: ClassVar[frozenset[str]] = frozenset({TEXT_CLASSIFICATION})
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


class ZeroShotStrategy(_Strategy):
    """CLIP zero-shot: no training; each label's prompts, embedded by the text tower, are the
    head over the image tower's embeddings."""

    name: Literal["zero_shot"] = "zero_shot"
    supported_tasks: ClassVar[frozenset[str]] = frozenset({IMAGE_CLASSIFICATION})
    needs_zero_shot: ClassVar[bool] = True
    templates: list[Annotated[str, Field(min_length=3, max_length=300)]] = Field(
        default_factory=lambda: ["a photo of a {}."],
        min_length=1,
        max_length=64,
        description="Prompt templates; '{}' is replaced by the label's text. A label's "
        "embedding is the mean of its normalised prompt embeddings (CLIP's prompt "
        "ensembling).",
    )
    label_texts: dict[str, Annotated[str, Field(min_length=1, max_length=300)]] | None = Field(
        None,
        max_length=10_000,
        description="Text to put in the templates per label name (default: the label name "
        "with '_' and '-' read as spaces).",
    )

    @field_validator("templates")
    @classmethod
    def _has_slot(cls, templates: list[str]) -> list[str]:
        for template in templates:
            if template.count("{}") != 1 or template.replace("{}", "").count(
                "{"
            ) + template.replace("{}", "").count("}"):
                raise ValueError(
                    f"each template needs exactly one '{{}}' and no other braces: {template!r}"
                )
        return templates


#: the strategies the ``auto`` strategy may try
AutoCandidateName = Literal["linear_probe", "contrastive", "lora", "full", "partial"]


class AutoCandidate(BaseModel):
    """One strategy of an ``auto`` job's bake-off, as planned at submit."""

    model_config = ConfigDict(extra="forbid", strict=True)

    name: AutoCandidateName
    learning_rate: float = Field(gt=0.0, le=1.0, description="Its rate (chosen by auto).")
    epochs: int = Field(ge=1, le=100, description="Its epochs when it wins (chosen by auto).")


class AutoStrategy(_Strategy):
    """Picks the strategy for you: a short bake-off of the strategies that suit the data (on
    the job's one validation split, with early stopping and the feature cache), then the
    winner trained in full and served (docs/strategies.md, The auto strategy)."""

    name: Literal["auto"] = "auto"
    time_budget_minutes: float | None = Field(
        None,
        gt=0.0,
        le=10_080.0,
        description="Soft limit on the whole job: the bake-off stops trying candidates once "
        "half of it is spent (the cheapest candidates run first), and the winner's final "
        "training gets the rest.",
    )
    candidates: list[AutoCandidateName] | None = Field(
        None,
        min_length=1,
        max_length=5,
        description="The strategies to try, in order. Left out: chosen from the data (few "
        "examples per class: contrastive and linear_probe; small data: linear_probe, lora "
        "and full; large data: lora and full; images: linear_probe, lora, full).",
    )
    plan: list[AutoCandidate] | None = Field(
        None,
        max_length=5,
        description="Filled in by the service at submit: each candidate with the learning rate "
        "and epochs chosen for it. A request may leave it out.",
    )

    @field_validator("candidates")
    @classmethod
    def _distinct(cls, names: list[str] | None) -> list[str] | None:
        if names is not None and len(set(names)) != len(names):
            raise ValueError("each candidate at most once")
        return names


AnyStrategy = (
    FullStrategy
    | LinearProbeStrategy
    | PartialStrategy
    | GradualUnfreezeStrategy
    | LoraStrategy
    | DannStrategy
    | DaptStrategy
    | ContrastiveStrategy
    | ZeroShotStrategy
    | AutoStrategy
)
#: the discriminated union ``POST /v1/jobs`` validates ``strategy`` with
StrategyConfig = Annotated[AnyStrategy, Field(discriminator="name")]

#: every strategy's config class by its API name, derived from :data:`AnyStrategy`
STRATEGY_CONFIGS: dict[str, type[AnyStrategy]] = {
    cls.model_fields["name"].default: cls for cls in get_args(AnyStrategy)
}
STRATEGY_NAMES: frozenset[str] = frozenset(STRATEGY_CONFIGS)
