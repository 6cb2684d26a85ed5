"""The ``auto`` hyperparameters: what a job trains with when the request leaves ``epochs``,
``batch_size``, ``learning_rate``, ``class_weights`` or ``early_stopping`` out (or says
``"auto"``). One place for the rules; docs/strategies.md ("Auto hyperparameters") has the
measurements behind each.

The rules, in short:

- **learning rate** by strategy, by data size and by modality: fine-tuning on little data
  needs a rate several times the textbook one, or its few steps barely move the new head
  (BBC News, 240 articles, 60 steps: ``full`` at 2e-5 reached 0.69 validation macro-F1, at
  2e-4 0.98; ``lora`` at 2e-4 0.85, at 5e-4 0.93); on large data the textbook rates; in
  between, geometrically from the small-data rate at 500 training examples to the large-data
  rate at 5,000; text models over 100M parameters take half; convolutional image models
  want 1e-3 (Fashion-MNIST MobileNetV2 ``full``: 0.773 at 2e-5, 0.861 at 1e-3). ``dapt``
  takes the rate of the strategy it runs after pretraining.
- **epochs** so that a fine-tuning job makes at least 150 optimiser steps and a head on
  frozen features 100 (at least 3 epochs, at most 20: early stopping ends them sooner when
  validation stops improving), and 2 epochs once the data alone give 1,250 steps or more.
- **batch size** 8 under 200 training examples (more steps), 32 from 20,000, else 16.
- **long texts**: ``max_length`` raised to cover 90% of the sampled training texts (a
  multiple of 64, up to the model's limit); when 10% or more are still longer, ``long_text``
  ``head_tail`` (first quarter and last three quarters of the window, Sun et al. 2019), which
  costs what truncation does.
- **imbalance**: when the largest class has 1.5 times the examples of the smallest, class
  weights ``auto``, selection by macro-F1 and a temperature fitted on validation (single-label
  tasks): Fine Foods reviews (about 2:1) made six of eight strategies majority-class
  predictors with the old defaults.

Every choice is returned with its reason; the job records them (``auto``) and an event.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from pydantic import TypeAdapter

from app.contract.hyperparameters import EarlyStopping, Hyperparameters
from app.contract.strategies import (
    STRATEGY_CONFIGS,
    AnyStrategy,
    AutoCandidate,
    AutoStrategy,
    StrategyConfig,
)
from app.contract.tasks import MULTILABEL_TASKS, PAIR_TASK

#: the fields ``auto`` may choose
AUTO_FIELDS = (
    "epochs",
    "batch_size",
    "learning_rate",
    "max_length",
    "long_text",
    "class_weights",
    "early_stopping",
    "temperature_scaling",
)
#: strategies whose trained part is a head on frozen features (cheap steps)
HEAD_ONLY = frozenset({"linear_probe", "contrastive", "zero_shot"})
#: optimiser steps a job should make at least
MIN_STEPS_FINE_TUNE = 150
MIN_STEPS_HEAD = 100
#: epochs' bounds, and the step count past which two epochs are enough
MIN_EPOCHS, MAX_EPOCHS, LARGE_DATA_STEPS = 3, 20, 1250
#: the small-data rate up to this many training examples, the large-data rate from this many
SMALL_DATA_ROWS, LARGE_RATE_ROWS = 500, 5000
#: from this many training examples, batches of 32
LARGE_DATA_ROWS = 20000
BIG_MODEL_PARAMETERS = 100_000_000
IMBALANCE_RATIO = 1.5

#: (small data, large data) rates by strategy name, text models
_TEXT_RATES: dict[str, tuple[float, float]] = {
    "full": (2e-4, 3e-5),
    "dann": (2e-4, 3e-5),
    "partial": (3e-4, 5e-5),
    "gradual_unfreeze": (3e-4, 5e-5),
    "lora": (1e-3, 5e-4),
}
#: the same for image models, by family
_IMAGE_RATES: dict[str, dict[str, tuple[float, float]]] = {
    "convnet": {"full": (1e-3, 1e-3), "partial": (1e-3, 1e-3), "gradual_unfreeze": (1e-3, 1e-3)},
    "vision-transformer": {"full": (1e-4, 5e-5), "partial": (2e-4, 1e-4)},
}
_IMAGE_LORA = (2e-3, 1e-3)


def profile(
    *,
    task: str,
    num_rows: int,
    label_counts: dict[str, int],
    validation_held_out: float,
    modality: str,
    family: str,
    parameters: int | None,
    tokens_p90: int | None = None,
    model_max: int | None = None,
) -> DataProfile:
    """The profile of a dataset of ``num_rows`` of which ``validation_held_out`` (a share,
    0 when a validation dataset is given) is held out."""
    train_rows = max(1, round(num_rows * (1 - validation_held_out)))
    return DataProfile(
        task, train_rows, dict(label_counts), modality, family, parameters, tokens_p90, model_max
    )


@dataclass(frozen=True)
class DataProfile:
    """What the rules read of a submission."""

    task: str
    train_rows: int  # examples trained on (after the validation split)
    label_counts: dict[str, int]
    modality: str  # "text" or "image"
    family: str  # the base's family: "encoder", "decoder", "convnet", ...
    parameters: int | None
    tokens_p90: int | None = None  # of a sample of training texts (the audit's scan)
    model_max: int | None = None  # the model's own token limit


@dataclass(frozen=True)
class Choice:
    field: str
    value: Any
    reason: str

    def as_json(self) -> dict[str, Any]:
        return {"field": self.field, "value": self.value, "reason": self.reason}


def choose(
    hp: Hyperparameters, strategy: AnyStrategy, data: DataProfile, *, requested: set[str]
) -> tuple[Hyperparameters, list[Choice]]:
    """``hp`` with every field of :data:`AUTO_FIELDS` not in ``requested`` chosen by the
    rules, and the choices made."""
    choices: list[Choice] = []
    if "batch_size" not in requested:
        choices.append(_batch_size(data))
    batch = next((c.value for c in choices if c.field == "batch_size"), hp.batch_size)
    if "learning_rate" not in requested:
        choices.append(_learning_rate(strategy, data))
    if "epochs" not in requested:
        choices.append(_epochs(strategy, data, batch))
    if "max_length" not in requested:
        length = _max_length(hp, data)
        if length is not None:
            choices.append(length)
    if "long_text" not in requested:
        window = next((c.value for c in choices if c.field == "max_length"), hp.max_length)
        long_text = _long_text(window, data)
        if long_text is not None:
            choices.append(long_text)
    choices += _imbalance(hp, data, requested)
    update = {c.field: c.value for c in choices}
    if "early_stopping" in update:
        update["early_stopping"] = EarlyStopping.model_validate(update["early_stopping"])
    return hp.model_copy(update=update), choices


#: fewer examples than this in some class: few-shot (contrastive pairs beat a plain head)
FEW_SHOT_PER_CLASS = 16
#: the order candidates run in: the cheapest first
_CHEAPEST_FIRST = ("linear_probe", "contrastive", "lora", "partial", "full")


def plan_auto(
    hp: Hyperparameters, strategy: AutoStrategy, data: DataProfile, *, requested: set[str]
) -> tuple[AutoStrategy, Choice]:
    """The ``auto`` strategy with its candidates and each one's rate and epochs chosen (what
    the request gave is kept), and the choice of candidates with its reason."""
    names: list[str]
    if strategy.candidates:
        names = [str(n) for n in strategy.candidates]
        reason = "as requested"
    else:
        names, reason = auto_candidates(data)
    plan = []
    for name in names:
        config = TypeAdapter(StrategyConfig).validate_python({"name": name})
        chosen, _ = choose(hp, config, data, requested=requested)
        rate = chosen.effective_learning_rate(config)
        plan.append(
            AutoCandidate.model_validate(
                {"name": name, "learning_rate": rate, "epochs": chosen.epochs}
            )
        )
    planned = strategy.model_copy(update={"candidates": names, "plan": plan})
    shown = [f"{c.name} (rate {c.learning_rate:g}, {c.epochs} epochs)" for c in plan]
    return planned, Choice("strategy.plan", ", ".join(shown), reason)


def auto_candidates(data: DataProfile) -> tuple[list[str], str]:
    """Which strategies suit the data, cheapest first, and why."""
    fewest = min((c for c in data.label_counts.values() if c > 0), default=0)
    text_single = data.modality == "text" and data.task == "text-classification"
    if data.modality == "image":
        names = ["linear_probe", "lora", "full"]
        why = "image data: a head on frozen features, adapters, every weight"
    elif text_single and fewest < FEW_SHOT_PER_CLASS:
        names = ["linear_probe", "contrastive"]
        why = f"few examples per class (the fewest: {fewest}): few-shot strategies"
    elif data.train_rows < SMALL_DATA_ROWS * 4:
        names = ["linear_probe", "lora", "full"]
        why = f"{data.train_rows} training examples: small data"
    else:
        names = ["lora", "full"]
        why = f"{data.train_rows} training examples: large data, fine-tuning wins"
    return sorted(names, key=_CHEAPEST_FIRST.index), why


def _imbalance(hp: Hyperparameters, data: DataProfile, requested: set[str]) -> list[Choice]:
    """Class weights, selection by macro-F1 and a fitted temperature for an imbalanced
    single-label dataset (each only where the request did not set it)."""
    ratio = imbalance_ratio(data.label_counts)
    if data.task in MULTILABEL_TASKS or ratio < IMBALANCE_RATIO:
        return []
    why = f"classes are imbalanced ({ratio:.1f}:1; weighted from {IMBALANCE_RATIO:g}:1)"
    choices = []
    if "class_weights" not in requested:
        choices.append(
            Choice("class_weights", "auto", f"{why}: the loss counts smaller classes more")
        )
    if "early_stopping" not in requested:
        stopping = hp.early_stopping.model_copy(update={"metric": "val_macro_f1"})
        choices.append(
            Choice(
                "early_stopping",
                stopping.model_dump(mode="json"),
                f"{why}: the served checkpoint is the best by macro-F1, which a majority-class "
                "predictor cannot win",
            )
        )
    if "temperature_scaling" not in requested and not hp.temperature_scaling:
        choices.append(
            Choice(
                "temperature_scaling",
                True,
                f"{why}: weighted training shifts the scores, so a temperature fitted on "
                "validation makes them calibrated again",
            )
        )
    return choices


def imbalance_ratio(label_counts: dict[str, int]) -> float:
    counts = [c for c in label_counts.values() if c > 0]
    if len(counts) < 2:
        return 1.0
    return max(counts) / min(counts)


def _batch_size(data: DataProfile) -> Choice:
    if data.train_rows < 200:
        return Choice(
            "batch_size",
            8,
            f"{data.train_rows} training examples: small batches give more optimiser steps",
        )
    if data.train_rows >= LARGE_DATA_ROWS:
        return Choice(
            "batch_size", 32, f"{data.train_rows} training examples: larger batches, steps enough"
        )
    return Choice("batch_size", 16, f"{data.train_rows} training examples")


def _learning_rate(strategy: AnyStrategy, data: DataProfile) -> Choice:
    name = str(getattr(strategy, "then", "full")) if strategy.name == "dapt" else strategy.name
    label = strategy.name if name == strategy.name else f"{strategy.name} (then {name})"
    if name in HEAD_ONLY:
        rate = _default_rate(name, strategy)
        return Choice("learning_rate", rate, f"{label} trains a head on frozen features: {rate:g}")
    if data.modality == "image":
        rates = _IMAGE_LORA if name == "lora" else _IMAGE_RATES.get(data.family, {}).get(name)
    else:
        rates = _TEXT_RATES.get(name)
    if rates is None:
        rate = _default_rate(name, strategy)
        return Choice("learning_rate", rate, f"{label}: its default rate")
    small, large = rates
    rows = max(1, data.train_rows)
    span = math.log(LARGE_RATE_ROWS) - math.log(SMALL_DATA_ROWS)
    t = min(1.0, max(0.0, (math.log(rows) - math.log(SMALL_DATA_ROWS)) / span))
    rate = small ** (1 - t) * large**t
    reason = (
        f"{label} on {data.train_rows} training examples: {small:g} up to {SMALL_DATA_ROWS}, "
        f"{large:g} from {LARGE_RATE_ROWS}, geometric between"
    )
    if data.modality == "image":
        reason += f" ({data.family} image model)"
    elif data.parameters and data.parameters >= BIG_MODEL_PARAMETERS:
        rate /= 2
        reason += f"; halved for {data.parameters / 1e6:.0f}M parameters"
    return Choice("learning_rate", float(f"{rate:.2g}"), reason)


def _default_rate(name: str, strategy: AnyStrategy) -> float:
    """The default rate of strategy ``name`` (``strategy`` itself, or dapt's downstream)."""
    config = STRATEGY_CONFIGS.get(name)
    return float(config.default_learning_rate if config else strategy.default_learning_rate)


def _max_length(hp: Hyperparameters, data: DataProfile) -> Choice | None:
    """Raised to cover the texts when the default would cut most long ones (never lowered:
    batches are padded to their longest text anyway)."""
    if data.modality != "text" or data.tokens_p90 is None or data.tokens_p90 <= hp.max_length:
        return None
    wanted = math.ceil(data.tokens_p90 / 64) * 64
    length = min(wanted, data.model_max) if data.model_max else wanted
    if length <= hp.max_length:
        return None
    cap = ", the model's limit" if data.model_max and length == data.model_max else ""
    return Choice(
        "max_length",
        length,
        f"90% of the sampled training texts are {data.tokens_p90} tokens or shorter; "
        f"{hp.max_length} would cut the rest: {length}{cap}",
    )


def _long_text(max_length: int, data: DataProfile) -> Choice | None:
    """``head_tail`` when 10% or more of the texts do not fit the window the job reads: at the
    cost of truncation it keeps each text's end as well as its beginning."""
    window = min(max_length, data.model_max) if data.model_max else max_length
    if (
        data.modality != "text"
        or data.task == PAIR_TASK
        or data.tokens_p90 is None
        or data.tokens_p90 <= window
    ):
        return None
    return Choice(
        "long_text",
        "head_tail",
        f"10% or more of the sampled training texts are longer than the {window} tokens a "
        "window holds: read each as its first quarter and last three quarters of tokens",
    )


def _epochs(strategy: AnyStrategy, data: DataProfile, batch_size: int) -> Choice:
    per_epoch = max(1, math.ceil(data.train_rows / batch_size))
    if per_epoch >= LARGE_DATA_STEPS:
        return Choice("epochs", 2, f"{per_epoch} steps per epoch: two passes are enough")
    target = MIN_STEPS_HEAD if strategy.name in HEAD_ONLY else MIN_STEPS_FINE_TUNE
    epochs = min(MAX_EPOCHS, max(MIN_EPOCHS, math.ceil(target / per_epoch)))
    return Choice(
        "epochs",
        epochs,
        f"{per_epoch} steps per epoch; at least {target} steps in all "
        f"({MIN_EPOCHS} to {MAX_EPOCHS} epochs; early stopping ends sooner)",
    )
