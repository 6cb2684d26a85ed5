"""Typed request configs: the ``strategy`` and ``hyperparameters`` of jobs and sweeps.

They mirror the API's contract (``GET /openapi.json``, docs/strategies.md) loosely on
purpose: every field is optional and left out of the request when not set, so the server's
defaults and bounds apply and stay the only truth; unknown fields are allowed and sent as they
are, so a field a newer server accepts can be used before this SDK knows it. A plain ``dict``
works everywhere one of these does.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict


class _Config(BaseModel):
    model_config = ConfigDict(extra="allow", protected_namespaces=())

    def to_request(self) -> dict[str, Any]:
        """The JSON object sent: the fields that were set (``None`` left out)."""
        return self.model_dump(mode="json", exclude_none=True)


class StrategyConfig(_Config):
    """Any strategy by name (``StrategyConfig(name="lora", r=4)``); the classes below type
    the fields each known strategy takes."""

    name: str


class Full(StrategyConfig):
    name: Literal["full"] = "full"
    layerwise_lr_decay: float | None = None


class LinearProbe(StrategyConfig):
    name: Literal["linear_probe"] = "linear_probe"
    pooling: Literal["auto", "mean", "cls", "pooler", "last"] | None = None


class Partial(StrategyConfig):
    name: Literal["partial"] = "partial"
    trainable_layers: int | None = None


class GradualUnfreeze(StrategyConfig):
    name: Literal["gradual_unfreeze"] = "gradual_unfreeze"
    unfreeze_every: int | None = None
    unfreeze_unit: Literal["epoch", "step"] | None = None
    lr_decay_factor: float | None = None
    slanted_triangular: bool | None = None
    cut_frac: float | None = None


class Lora(StrategyConfig):
    name: Literal["lora"] = "lora"
    r: int | None = None
    alpha: int | None = None
    dropout: float | None = None
    target_modules: list[str] | None = None


class Dann(StrategyConfig):
    name: Literal["dann"] = "dann"
    target_dataset_id: str
    domain_loss_weight: float | None = None
    gamma: float | None = None


class Dapt(StrategyConfig):
    name: Literal["dapt"] = "dapt"
    unlabeled_dataset_id: str
    mlm_steps: int | None = None
    mlm_probability: float | None = None
    mlm_learning_rate: float | None = None
    then: Literal["full", "partial", "lora", "linear_probe"] | None = None


class Contrastive(StrategyConfig):
    name: Literal["contrastive"] = "contrastive"
    num_pairs: int | None = None
    pair_epochs: int | None = None
    pair_learning_rate: float | None = None


class ZeroShot(StrategyConfig):
    name: Literal["zero_shot"] = "zero_shot"
    templates: list[str] | None = None
    label_texts: dict[str, str] | None = None


class Auto(StrategyConfig):
    """The service picks: a short bake-off of the strategies that suit the data, then the
    winner trained in full (the job's ``strategy.plan`` and report say what ran)."""

    name: Literal["auto"] = "auto"
    time_budget_minutes: float | None = None
    candidates: list[Literal["linear_probe", "contrastive", "lora", "full", "partial"]] | None = (
        None
    )


#: the typed config of each strategy name this SDK knows (the server may know more)
STRATEGIES: dict[str, type[StrategyConfig]] = {
    "full": Full,
    "linear_probe": LinearProbe,
    "partial": Partial,
    "gradual_unfreeze": GradualUnfreeze,
    "lora": Lora,
    "dann": Dann,
    "dapt": Dapt,
    "contrastive": Contrastive,
    "zero_shot": ZeroShot,
    "auto": Auto,
}


class EarlyStopping(_Config):
    enabled: bool | None = None
    metric: str | None = None
    mode: Literal["auto", "min", "max"] | None = None
    patience: int | None = None
    min_delta: float | None = None
    restore_best: bool | None = None


class Hyperparameters(_Config):
    """Settings shared by every strategy; unset ones take the server's defaults."""

    epochs: int | None = None
    batch_size: int | None = None
    learning_rate: float | None = None
    max_length: int | None = None
    long_text: Literal["truncate", "head_tail", "chunks"] | None = None
    max_chunks: int | None = None
    seed: int | None = None
    validation_fraction: float | None = None
    weight_decay: float | None = None
    warmup_ratio: float | None = None
    max_grad_norm: float | None = None
    early_stopping: EarlyStopping | None = None
    eval_every_steps: int | None = None
    random_resized_crop: bool | None = None
    horizontal_flip: bool | None = None
    class_weights: Literal["auto"] | dict[str, float] | None = None
    temperature_scaling: bool | None = None
    tune_thresholds: bool | None = None


StrategyLike = StrategyConfig | Mapping[str, Any] | str
HyperparametersLike = Hyperparameters | Mapping[str, Any]


def strategy_body(strategy: StrategyLike) -> dict[str, Any]:
    """The ``strategy`` object of a request from a config, a mapping or a bare name."""
    if isinstance(strategy, str):
        return {"name": strategy}
    if isinstance(strategy, StrategyConfig):
        return strategy.to_request()
    return dict(strategy)


def hyperparameters_body(hyperparameters: HyperparametersLike | None) -> dict[str, Any] | None:
    if hyperparameters is None:
        return None
    if isinstance(hyperparameters, Hyperparameters):
        return hyperparameters.to_request()
    return dict(hyperparameters)
