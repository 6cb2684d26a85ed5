"""The client commands' arguments (each with its help) and handlers."""

from __future__ import annotations

import argparse

from tuneserve.cli import resources as r


def _group(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], name: str, text: str
) -> argparse._SubParsersAction[argparse.ArgumentParser]:
    parser = sub.add_parser(name, help=text, description=text)
    return parser.add_subparsers(dest=f"{name}_command", required=True, metavar="COMMAND")


def _leaf(
    group: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    text: str,
    handler: r.Handler,
    common: argparse.ArgumentParser,
) -> argparse.ArgumentParser:
    parser = group.add_parser(name, help=text, description=text, parents=[common])
    parser.set_defaults(client_handler=handler)
    return parser


def _limit(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")


def _id(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("id", help=f"the {what}'s id")


def add_client_commands(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    datasets = _group(sub, "datasets", "upload and manage datasets")
    up = _leaf(
        datasets, "upload", "upload a CSV, JSONL, Parquet or image zip", r.datasets_upload, common
    )
    up.add_argument("path", help="the file to upload")
    up.add_argument(
        "--task",
        default=None,
        help="text-classification (default), "
        "text-multilabel, text-pair-classification, image-classification, ...",
    )
    up.add_argument("--name", default=None, help="a name for people (default: the file's)")
    up.add_argument("--text-column", default=None, help="the column of the texts (text)")
    up.add_argument("--label-column", default=None, help="the column of the labels (label)")
    up.add_argument("--text-pair-column", default=None, help="pair tasks: the second text")
    up.add_argument(
        "--image-column",
        default=None,
        help="image zips with a labels file: the column of the image paths (image)",
    )
    up.add_argument(
        "--format",
        default=None,
        choices=["csv", "jsonl", "parquet"],
        help="the file's format when its extension does not say",
    )
    _limit(_leaf(datasets, "list", "list datasets, newest first", r.datasets_list, common))
    _id(
        _leaf(datasets, "show", "a dataset and its validation report", r.datasets_show, common),
        "dataset",
    )
    _id(_leaf(datasets, "delete", "delete a dataset", r.datasets_delete, common), "dataset")

    jobs = _group(sub, "jobs", "submit, follow and cancel tuning jobs")
    create = _leaf(jobs, "create", "submit a tuning job", r.jobs_create, common)
    create.add_argument("--base-model", required=True, help="a base model id (GET /v1/base-models)")
    create.add_argument("--dataset-id", required=True, help="the training dataset's id")
    create.add_argument(
        "--strategy",
        default="full",
        help='a strategy name, or a JSON object (\'{"name": "lora", "r": 4}\'); default full',
    )
    create.add_argument(
        "--hyperparameters",
        default=None,
        help='a JSON object (\'{"epochs": 3, "max_length": 128}\')',
    )
    create.add_argument("--validation-dataset-id", default=None, help="a validation dataset")
    create.add_argument("--test-dataset-id", default=None, help="a test dataset")
    create.add_argument("--watch", action="store_true", help="then follow it (as jobs watch)")
    lj = _leaf(jobs, "list", "list jobs, newest first", r.jobs_list, common)
    _limit(lj)
    lj.add_argument("--status", default=None, help="only jobs in this status")
    _id(_leaf(jobs, "show", "a job: status, progress, metrics, audit", r.jobs_show, common), "job")
    _id(_leaf(jobs, "cancel", "cancel a job", r.jobs_cancel, common), "job")
    _id(
        _leaf(
            jobs,
            "watch",
            "follow a job live; exit 0 succeeded, 1 failed, 3 cancelled",
            r.jobs_watch,
            common,
        ),
        "job",
    )

    sweeps = _group(sub, "sweeps", "strategy bake-offs on one split")
    sc = _leaf(sweeps, "create", "start a sweep", r.sweeps_create, common)
    sc.add_argument("--base-model", required=True, help="a base model id")
    sc.add_argument("--dataset-id", required=True, help="the training dataset's id")
    sc.add_argument(
        "--strategy",
        action="append",
        required=True,
        help="a candidate strategy (name or JSON); repeat for each",
    )
    sc.add_argument("--learning-rates", default=None, help="comma-separated rates to try")
    sc.add_argument("--hyperparameters", default=None, help="a JSON object for every candidate")
    sc.add_argument("--metric", default=None, help="the ranking metric (val_macro_f1)")
    _limit(_leaf(sweeps, "list", "list sweeps, newest first", r.sweeps_list, common))
    _id(_leaf(sweeps, "show", "a sweep's leaderboard", r.sweeps_show, common), "sweep")
    _id(_leaf(sweeps, "cancel", "cancel a sweep", r.sweeps_cancel, common), "sweep")

    models = _group(sub, "models", "fine-tuned models: predict, export")
    _limit(_leaf(models, "list", "list models, newest first", r.models_list, common))
    pr = _leaf(models, "predict", "classify texts or image files", r.models_predict, common)
    _id(pr, "model")
    pr.add_argument("inputs", nargs="*", help="texts to classify")
    pr.add_argument("--image", action="append", default=[], help="an image file; repeatable")
    pr.add_argument("--top-k", type=int, default=1, help="labels per input (default 1)")
    ex = _leaf(
        models,
        "export",
        "download the model as a .tar.gz for transformers",
        r.models_export,
        common,
    )
    _id(ex, "model")
    ex.add_argument("--output", default=".", help="a file, or a directory (default .)")
    ex.add_argument("--no-merge-lora", action="store_true", help="a LoRA model's adapter as is")
    ex.add_argument(
        "--as-full",
        action="store_true",
        help="a probe as base + head, where the architecture allows it",
    )
