"""What a training recipe is: the :class:`Strategy` protocol, the types it takes and returns,
and the registry strategies put themselves in.

A strategy gets a resolved :class:`TrainingSetup` (:func:`worker.training.prepare.prepare_setup`)
and its typed config (the pydantic model from :mod:`app.contract.strategies`), builds what it
trains, runs :func:`worker.training.loop.fit` and returns a :class:`TrainedModel` that the
artifact writer saves. A strategy names itself in its class statement (:class:`Strategy`);
:mod:`worker.strategies.registry` imports every strategy module, so that importing it fills
:data:`STRATEGIES`. This module imports no strategy: anything (``dapt`` looking up its
downstream strategy, the artifact writer, serving) can depend on it without a cycle.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
from torch import nn

from app.contract.hyperparameters import Hyperparameters
from app.contract.tasks import IMAGE_TASKS, MULTILABEL_TASKS
from worker.core.data import Examples
from worker.core.long_text import TRUNCATE, LongText
from worker.features import FeatureCache
from worker.training.callbacks import TrainingCallbacks
from worker.training.checkpoint import Checkpointer
from worker.training.selection import DEFAULT_PLAN, EvalPlan

ArtifactKind = Literal["full", "head", "lora"]


@dataclass
class TrainingSetup:
    """Everything a strategy needs, resolved once by ``prepare_setup``."""

    base_model_dir: Path
    task: str
    label_names: list[str]
    train: Examples
    validation: Examples
    hp: Hyperparameters
    callbacks: TrainingCallbacks
    device: torch.device
    #: the tokenizer, or for image tasks the base's image processor
    tokenizer: Any
    #: texts of the other datasets a strategy reads, by config field (e.g. ``target_dataset_id``)
    aux_texts: dict[str, list[str]] = field(default_factory=dict)
    #: where the job's checkpoints go (None: no checkpoints, e.g. in tests and benchmarks)
    checkpoint: Checkpointer | None = None
    #: selection metric, early stopping, step evaluations and loss weights for ``fit``
    plan: EvalPlan = DEFAULT_PLAN
    #: pooled features reused across jobs (linear_probe, contrastive's head); None: no cache
    feature_cache: FeatureCache | None = None

    @property
    def multilabel(self) -> bool:
        return self.task in MULTILABEL_TASKS

    @property
    def num_labels(self) -> int:
        return len(self.label_names)

    @property
    def images(self) -> bool:
        return self.task in IMAGE_TASKS


@dataclass
class TrainedModel:
    """What the artifact writer needs, plus the final metrics."""

    kind: ArtifactKind
    #: ``full``: the AutoModelForSequenceClassification; ``head``: the nn.Linear head;
    #: ``lora``: the unmerged ``peft.PeftModel`` (adapters + trained head over the base)
    model: nn.Module
    tokenizer: Any
    task: str
    label_names: list[str]
    base_model_dir: Path
    strategy: str
    #: truncation length used in training (already capped by tokenizer and model)
    max_length: int
    #: the served (selected) evaluation's metrics
    metrics: dict[str, float]
    history: list[dict[str, float]] = field(default_factory=list)
    #: which evaluation was served and what the last one scored (:meth:`Selector.finish`)
    selection: dict[str, Any] | None = None
    #: ``head`` only: how token states were pooled into the head's input
    pooling: str | None = None
    #: ``head`` and ``lora``: an encoder changed by training (contrastive, dapt), saved inside
    #: the artifact under ``encoder/``; None means the head sits on the unchanged base
    backbone: nn.Module | None = None
    #: how texts beyond ``max_length`` were read in training (and are read in serving)
    long_text: LongText = TRUNCATE


class Strategy:
    """The base of every strategy. A subclass names itself in its class statement and is
    registered then: ``class FullFineTune(Strategy, name="full", artifact_kind="full")``.
    (A subclass without a name, such as a test's spy, inherits its parent's and is not
    registered.)"""

    #: the API name (``strategy.name`` in ``POST /v1/jobs``)
    name: ClassVar[str]
    #: what the artifact holds: ``full`` weights, a ``head`` over a base, or ``lora`` adapters
    artifact_kind: ClassVar[ArtifactKind]

    def __init_subclass__(
        cls, *, name: str | None = None, artifact_kind: ArtifactKind | None = None, **kwargs: Any
    ) -> None:
        super().__init_subclass__(**kwargs)
        if name is None:
            return
        if artifact_kind is None:
            raise TypeError(f"strategy {name!r} needs an artifact_kind")
        cls.name, cls.artifact_kind = name, artifact_kind
        if name in STRATEGIES:
            raise ValueError(f"two strategies are named {name!r}")
        STRATEGIES[name] = cls()

    def train(self, setup: TrainingSetup, config: Any) -> TrainedModel:
        raise NotImplementedError


#: every registered strategy by API name (filled as the strategy modules are imported)
STRATEGIES: dict[str, Strategy] = {}


def strategy_named(name: str) -> Strategy:
    """The registered strategy called ``name`` (``KeyError`` naming the known ones)."""
    try:
        return STRATEGIES[name]
    except KeyError:
        raise KeyError(f"unknown strategy {name!r}; known: {sorted(STRATEGIES)}") from None
