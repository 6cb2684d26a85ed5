"""The client commands: datasets, jobs, sweeps and models, each a thin call of the SDK."""

from __future__ import annotations

import argparse
import itertools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tuneserve.cli.output import emit_json, fields, table
from tuneserve.client import Client

#: a command: the client and the parsed arguments in, the exit status out
Handler = Callable[[Client, argparse.Namespace], int]


def _strategy(text: str) -> Any:
    """A strategy: a name (``full``) or a JSON object (``{"name": "lora", "r": 4}``)."""
    text = text.strip()
    return json.loads(text) if text.startswith("{") else text


def _object(text: str | None, what: str) -> dict[str, Any] | None:
    if text is None:
        return None
    value = json.loads(text)
    if not isinstance(value, dict):
        raise ValueError(f"{what} must be a JSON object")
    return value


def _show(args: argparse.Namespace, value: Any, title: str) -> int:
    if args.json:
        emit_json(value)
    else:
        fields(title, value.model_dump(mode="json"))
    return 0


# -- datasets ---------------------------------------------------------------------------------
def datasets_upload(client: Client, args: argparse.Namespace) -> int:
    dataset = client.datasets.upload(
        Path(args.path),
        task=args.task,
        name=args.name,
        text_column=args.text_column,
        label_column=args.label_column,
        text_pair_column=args.text_pair_column,
        image_column=args.image_column,
        format=args.format,
    )
    return _show(args, dataset, f"dataset {dataset.id}")


def datasets_list(client: Client, args: argparse.Namespace) -> int:
    rows = list(itertools.islice(client.datasets.list(), args.limit))
    if args.json:
        emit_json(rows)
        return 0
    cells = [(d.id, d.name, d.task, d.status, d.num_rows, len(d.labels)) for d in rows]
    table("datasets", ["id", "name", "task", "status", "rows", "labels"], cells)
    return 0


def datasets_show(client: Client, args: argparse.Namespace) -> int:
    return _show(args, client.datasets.get(args.id), f"dataset {args.id}")


def datasets_delete(client: Client, args: argparse.Namespace) -> int:
    client.datasets.delete(args.id)
    return _deleted(args, "dataset")


def _deleted(args: argparse.Namespace, what: str) -> int:
    if args.json:
        emit_json({"id": args.id, "deleted": True})
    else:
        print(f"deleted {what} {args.id}")
    return 0


# -- jobs -------------------------------------------------------------------------------------
def jobs_create(client: Client, args: argparse.Namespace) -> int:
    job = client.jobs.create(
        base_model=args.base_model,
        dataset_id=args.dataset_id,
        strategy=_strategy(args.strategy),
        hyperparameters=_object(args.hyperparameters, "--hyperparameters"),
        validation_dataset_id=args.validation_dataset_id,
        test_dataset_id=args.test_dataset_id,
    )
    if args.watch:
        from tuneserve.cli.watch import watch_job

        return watch_job(client, job.id, as_json=args.json)
    return _show(args, job, f"job {job.id}")


def jobs_list(client: Client, args: argparse.Namespace) -> int:
    rows = list(itertools.islice(client.jobs.list(status=args.status), args.limit))
    if args.json:
        emit_json(rows)
        return 0
    cells = [
        (
            j.id,
            j.status,
            j.base_model,
            j.strategy.get("name"),
            f"{j.progress.percent:.0f}%",
            j.model_id,
        )
        for j in rows
    ]
    table("jobs", ["id", "status", "base model", "strategy", "progress", "model"], cells)
    return 0


def jobs_show(client: Client, args: argparse.Namespace) -> int:
    return _show(args, client.jobs.get(args.id), f"job {args.id}")


def jobs_cancel(client: Client, args: argparse.Namespace) -> int:
    return _show(args, client.jobs.cancel(args.id), f"job {args.id}")


def jobs_watch(client: Client, args: argparse.Namespace) -> int:
    from tuneserve.cli.watch import watch_job

    return watch_job(client, args.id, as_json=args.json)


# -- sweeps -----------------------------------------------------------------------------------
def sweeps_create(client: Client, args: argparse.Namespace) -> int:
    strategies = [_strategy(item) for item in args.strategy]
    rates = [float(r) for r in args.learning_rates.split(",")] if args.learning_rates else None
    sweep = client.sweeps.create(
        base_model=args.base_model,
        dataset_id=args.dataset_id,
        strategies=strategies,
        learning_rates=rates,
        hyperparameters=_object(args.hyperparameters, "--hyperparameters"),
        metric=args.metric,
    )
    return _show(args, sweep, f"sweep {sweep.id}")


def sweeps_list(client: Client, args: argparse.Namespace) -> int:
    rows = list(itertools.islice(client.sweeps.list(), args.limit))
    if args.json:
        emit_json(rows)
        return 0
    cells = [(s.id, s.status, s.base_model, s.model_id) for s in rows]
    table("sweeps", ["id", "status", "base model", "model"], cells)
    return 0


def sweeps_show(client: Client, args: argparse.Namespace) -> int:
    sweep = client.sweeps.get(args.id)
    if args.json:
        emit_json(sweep)
        return 0
    cells = [
        (e.rank, e.strategy, e.learning_rate, e.status, e.value, e.job_id)
        for e in sweep.leaderboard
    ]
    columns = ["rank", "strategy", "lr", "status", sweep.metric or "value", "job"]
    table(f"sweep {sweep.id}: {sweep.status}", columns, cells)
    return 0


def sweeps_cancel(client: Client, args: argparse.Namespace) -> int:
    return _show(args, client.sweeps.cancel(args.id), f"sweep {args.id}")


# -- models -----------------------------------------------------------------------------------
def models_list(client: Client, args: argparse.Namespace) -> int:
    rows = list(itertools.islice(client.models.list(), args.limit))
    if args.json:
        emit_json(rows)
        return 0
    cells = [(m.id, m.base_model, m.task, m.strategy, m.job_id) for m in rows]
    table("models", ["id", "base model", "task", "strategy", "job"], cells)
    return 0


def models_predict(client: Client, args: argparse.Namespace) -> int:
    if bool(args.inputs) == bool(args.image):
        raise ValueError("give texts, or --image files (not both)")
    images = [Path(p) for p in args.image] if args.image else None
    predictions = client.models.predict(
        args.id, list(args.inputs) or None, images=images, top_k=args.top_k
    )
    if args.json:
        emit_json(predictions)
        return 0
    given = args.inputs or args.image
    cells = [
        (
            text if len(text) <= 60 else text[:59] + "…",
            p.label,
            f"{p.score:.3f}",
            ", ".join(f"{s.label} {s.score:.3f}" for s in p.top_k),
        )
        for text, p in zip(given, predictions, strict=True)
    ]
    table(f"model {args.id}", ["input", "label", "score", "top k"], cells)
    return 0


def models_export(client: Client, args: argparse.Namespace) -> int:
    path = client.models.export(
        args.id, args.output, merge_lora=not args.no_merge_lora, as_full=args.as_full
    )
    if args.json:
        emit_json({"id": args.id, "path": str(path), "bytes": path.stat().st_size})
    else:
        print(f"exported model {args.id} to {path} ({path.stat().st_size} bytes)")
    return 0
