"""What strategies share, in one flat module: loading the classifier, the data loaders, AdamW
groups, the warmup schedule, head training on pooled features, and the ``TrainedModel``.

A strategy module keeps only what defines it (what trains, and any loss or hook of its own);
everything here is the scaffolding around :func:`worker.training.loop.fit`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from peft import PeftModel
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from transformers import get_linear_schedule_with_warmup

from worker.core.data import Examples, label_tensor, make_loader, move_batch, tokenize_examples
from worker.core.data import effective_max_length as _effective_max_length
from worker.core.device import make_generator
from worker.core.images import image_loader, pixel_inputs
from worker.core.long_text import TRUNCATE, LongText, pool_windows, split_windows
from worker.core.models import load_classifier as _load_classifier
from worker.features import Featurizer
from worker.training.loop import FitResult, Forward, fit
from worker.training.recipe import ArtifactKind, TrainedModel, TrainingSetup

#: maps a parameter's name to its AdamW group's name and learning-rate multiplier
LrScale = Callable[[str], tuple[str, float]]


def load_classifier(setup: TrainingSetup) -> Any:
    """A fresh ``AutoModelForSequenceClassification`` for the job's labels, on its device."""
    model = _load_classifier(
        setup.base_model_dir, label_names=setup.label_names, multilabel=setup.multilabel
    )
    return model.to(setup.device)


def max_length_for(setup: TrainingSetup, model_config: Any) -> int:
    """The job's ``max_length`` capped by the tokenizer's and the model's own maximum (image
    tasks: 0, they have no tokens)."""
    if setup.images:
        return 0
    return _effective_max_length(setup.tokenizer, setup.hp.max_length, model_config)


def text_loader(
    setup: TrainingSetup,
    examples: Examples,
    *,
    max_length: int,
    seed: int | None = None,
    labels: bool = True,
) -> DataLoader[Any]:
    """``(inputs, labels)`` batches of ``examples``, padded per batch; shuffled by ``seed``
    when given. ``labels=False`` for texts whose labels do not matter (a target domain)."""
    multilabel = setup.multilabel and labels
    data = tokenize_examples(
        examples,
        setup.tokenizer,
        max_length=max_length,
        multilabel=multilabel,
        num_labels=setup.num_labels if labels else 1,
        long_text=LongText.of(setup.hp),
    )
    generator = make_generator(seed) if seed is not None else None
    return make_loader(data, setup.tokenizer, batch_size=setup.hp.batch_size, generator=generator)


def example_loaders(
    setup: TrainingSetup, model_config: Any
) -> tuple[DataLoader[Any], DataLoader[Any], int]:
    """Train (shuffled by ``hp.seed``) and validation loaders of the job's texts or images,
    and the truncation length (0 for images)."""
    max_length = max_length_for(setup, model_config)
    if setup.images:

        def images(examples: Examples, generator: torch.Generator | None) -> DataLoader[Any]:
            return image_loader(
                examples,
                batch_size=setup.hp.batch_size,
                multilabel=setup.multilabel,
                num_labels=setup.num_labels,
                generator=generator,
            )

        return images(setup.train, make_generator(setup.hp.seed)), images(setup.validation, None), 0
    train = text_loader(setup, setup.train, max_length=max_length, seed=setup.hp.seed)
    validation = text_loader(setup, setup.validation, max_length=max_length)
    return train, validation, max_length


def model_inputs(setup: TrainingSetup, model: nn.Module) -> Callable[[Any], dict[str, Any]]:
    """A batch's inputs as the model takes them, on the job's device: tokens as they are;
    images through the base's processor, augmented while ``model`` trains."""
    hp, device = setup.hp, setup.device

    def inputs(batch: Any) -> dict[str, Any]:
        if setup.images:
            batch = pixel_inputs(
                setup.tokenizer,
                batch,
                training=model.training,
                crop=hp.random_resized_crop,
                flip=hp.horizontal_flip,
            )
        return move_batch(batch, device)

    return inputs


def logits_of(model: nn.Module, setup: TrainingSetup) -> Forward:
    """``forward`` for a Hugging Face classifier: a batch of inputs to its logits."""
    inputs = model_inputs(setup, model)

    def forward(batch: Any) -> torch.Tensor:
        model_inputs, windows = split_windows(inputs(batch))
        logits: torch.Tensor = model(**model_inputs).logits
        return logits if windows is None else pool_windows(logits, windows)

    return forward


def no_decay_names(model: nn.Module) -> set[str]:
    """Parameters AdamW does not decay: biases and normalisation weights."""
    names = {name for name, _ in model.named_parameters() if name.endswith("bias")}
    for module_name, module in model.named_modules():
        if isinstance(module, nn.LayerNorm) or "layernorm" in type(module).__name__.lower():
            prefix = f"{module_name}." if module_name else ""
            names.update(prefix + name for name, _ in module.named_parameters(recurse=False))
    return names


def adamw_groups(
    model: nn.Module,
    *,
    lr: float,
    weight_decay: float,
    lr_scale: LrScale | None = None,
    include_frozen: bool = False,
) -> list[dict[str, Any]]:
    """AdamW parameter groups: one per (``lr_scale`` group, decays?), each with ``group``,
    ``names``, ``lr`` (``lr`` times the group's multiplier) and ``weight_decay`` (0 for biases
    and normalisation weights). Only parameters that require grad, unless ``include_frozen``
    (gradual unfreezing: AdamW skips a parameter without a gradient)."""
    no_decay = no_decay_names(model)
    groups: dict[tuple[str, bool], dict[str, Any]] = {}
    for name, parameter in model.named_parameters():
        if not (parameter.requires_grad or include_frozen):
            continue
        label, scale = lr_scale(name) if lr_scale is not None else ("all", 1.0)
        decays = name not in no_decay
        group = groups.setdefault(
            (label, decays),
            {
                "params": [],
                "names": [],
                "group": label,
                "lr": lr * scale,
                "weight_decay": weight_decay if decays else 0.0,
            },
        )
        group["params"].append(parameter)
        group["names"].append(name)
    return list(groups.values())


def adamw(model: nn.Module, setup: TrainingSetup, *, lr: float, **groups: Any) -> torch.optim.AdamW:
    """AdamW over :func:`adamw_groups` with the job's weight decay."""
    return torch.optim.AdamW(
        adamw_groups(model, lr=lr, weight_decay=setup.hp.weight_decay, **groups)
    )


def warmup_schedule(
    optimizer: torch.optim.Optimizer, setup: TrainingSetup, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warmup over ``hp.warmup_ratio`` of ``total_steps``, then linear decay to 0."""
    warmup = math.ceil(total_steps * setup.hp.warmup_ratio)
    return get_linear_schedule_with_warmup(optimizer, warmup, total_steps)


def trained_model(
    setup: TrainingSetup,
    result: FitResult,
    *,
    strategy: str,
    kind: ArtifactKind,
    model: nn.Module,
    max_length: int,
    pooling: str | None = None,
    backbone: nn.Module | None = None,
) -> TrainedModel:
    """The :class:`TrainedModel` of a finished ``fit`` (``model`` put in eval mode)."""
    model.eval()
    return TrainedModel(
        kind=kind,
        model=model,
        tokenizer=setup.tokenizer,
        task=setup.task,
        label_names=setup.label_names,
        base_model_dir=setup.base_model_dir,
        strategy=strategy,
        max_length=max_length,
        metrics=result.metrics,
        history=result.history,
        selection=result.selection,
        pooling=pooling,
        backbone=backbone,
        long_text=LongText.of(setup.hp) if not setup.images else TRUNCATE,
    )


def fine_tune_classifier(
    setup: TrainingSetup,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    *,
    strategy: str,
    kind: ArtifactKind = "full",
    scheduler: Callable[[int], Any] | None = None,
    on_step_begin: Callable[[int, int], None] | None = None,
) -> TrainedModel:
    """Train a Hugging Face classifier on the job's text splits with :func:`fit`:
    ``scheduler(total_steps)`` builds the schedule (default: warmup then linear decay)."""
    train_loader, val_loader, max_length = example_loaders(setup, model.config)
    total_steps = setup.hp.epochs * len(train_loader)
    result = fit(
        setup,
        model=model,
        forward=logits_of(model, setup),
        train_loader=train_loader,
        val_loader=val_loader,
        optimizer=optimizer,
        scheduler=(
            scheduler(total_steps) if scheduler else warmup_schedule(optimizer, setup, total_steps)
        ),
        on_step_begin=on_step_begin,
    )
    return trained_model(
        setup, result, strategy=strategy, kind=kind, model=model, max_length=max_length
    )


def split_features(
    setup: TrainingSetup, featurizer: Featurizer, splits: tuple[Examples, ...] | None = None
) -> tuple[torch.Tensor, ...]:
    """Pooled features of the train and validation splits (or of ``splits``), reporting
    progress as the phase ``extracting_features`` (cache hits count at once)."""
    chosen = splits if splits is not None else (setup.train, setup.validation)
    total = sum(len(split) for split in chosen)

    def report(done: int) -> None:
        setup.callbacks.on_phase_progress(phase="extracting_features", done=done, total=total)

    return tuple(featurizer.features(*chosen, progress=report))


def train_head(
    setup: TrainingSetup,
    features: tuple[torch.Tensor, ...],
    *,
    lr: float,
    strategy: str,
    max_length: int,
    pooling: str,
    backbone: nn.Module | None = None,
) -> TrainedModel:
    """A new ``nn.Linear`` head trained with :func:`fit` on the pooled ``(train, validation)``
    features (linear_probe, contrastive): seeded shuffle, AdamW, warmup then linear decay.
    The result is a ``head`` model over ``backbone`` (None: the unchanged base)."""
    train_x, val_x = features
    device, hp = setup.device, setup.hp

    def dataset(features: torch.Tensor, examples: Examples) -> TensorDataset:
        labels = label_tensor(examples, multilabel=setup.multilabel, num_labels=setup.num_labels)
        return TensorDataset(features, labels.to(device))

    head = nn.Linear(int(train_x.shape[1]), setup.num_labels).to(device)
    train_loader = DataLoader(
        dataset(train_x, setup.train),
        batch_size=hp.batch_size,
        shuffle=True,
        generator=make_generator(hp.seed),
    )
    val_loader = DataLoader(dataset(val_x, setup.validation), batch_size=hp.batch_size)
    optimizer = adamw(head, setup, lr=lr)
    result = fit(
        setup,
        model=head,
        forward=head,
        train_loader=train_loader,
        val_loader=val_loader,
        optimizer=optimizer,
        scheduler=warmup_schedule(optimizer, setup, hp.epochs * len(train_loader)),
    )
    return trained_model(
        setup,
        result,
        strategy=strategy,
        kind="head",
        model=head,
        max_length=max_length,
        pooling=pooling,
        backbone=backbone,
    )


def parameter_counts(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameters; a PEFT model counts as peft's
    ``print_trainable_parameters`` says (its copies of the head count once)."""
    if isinstance(model, PeftModel):
        trainable, total = model.get_nb_trainable_parameters()
        return int(trainable), int(total)
    parameters = list(model.parameters())
    return sum(p.numel() for p in parameters if p.requires_grad), sum(p.numel() for p in parameters)
