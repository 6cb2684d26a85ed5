"""Run one tuning job: claim, load, train, write the artifact, register the model.

``run(job_id)`` is what the ``train`` task calls. The message only wakes the worker: it claims
the fairest queued job (``claim_next``: not necessarily ``job_id``) and does nothing when none
waits, so a redelivered or duplicate message never runs a job twice. Every exception ends
the job ``failed`` with a reason a user can read (the traceback goes to the worker log); a
cancel ends it ``cancelled``; a lost lease stops it without writing anything more.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter

from app.base_models.registry import get_base_model
from app.config import get_settings
from app.contract.hyperparameters import Hyperparameters
from app.contract.strategies import StrategyConfig
from app.datasets.orm import Dataset
from app.db import new_id, session_scope
from app.jobs.lifecycle import Claim
from app.jobs.orm import Job
from app.models.orm import Model
from app.storage import Storage
from worker.job_store import JobStore, LeaseLost, claim_next
from worker.progress import DbCallbacks, Heartbeat
from worker.sweep_settling import settle_sweeps
from worker.training.callbacks import is_scalar_metric

log = logging.getLogger(__name__)

_strategy_adapter: TypeAdapter[Any] = TypeAdapter(StrategyConfig)


class JobInputError(Exception):
    """A problem with the job's inputs that the user can fix (shown as the failure reason)."""


def run(job_id: str) -> str | None:
    """Woken by ``job_id``'s message: train the fairest queued job if this worker wins its
    claim. Returns the final status, or None when no job was claimed."""
    settings = get_settings()
    won = claim_next(lease_seconds=settings.lease_seconds)
    if won is None:
        log.info("message for job %s: no queued job to claim; no-op", job_id)
        return None
    if won.job_id != job_id:
        log.info("message for job %s: claimed job %s (fair order)", job_id, won.job_id)
    store = JobStore(won, lease_seconds=settings.lease_seconds)
    heartbeat = Heartbeat(store, lease_seconds=settings.lease_seconds)
    heartbeat.start()
    try:
        return _run_claimed(won, store, heartbeat)
    finally:
        heartbeat.stop()


def _run_claimed(won: Claim, store: JobStore, heartbeat: Heartbeat) -> str | None:
    import torch

    from worker.training.callbacks import TrainingCancelled, TrainingReleased
    from worker.training.checkpoint import Checkpointer

    settings = get_settings()
    storage = Storage.from_settings(settings)
    staging: Path | None = None
    report_dir: Path | None = None
    sweep_id: str | None = None
    status: str | None = None
    checkpoints = Checkpointer(
        storage.path(f"checkpoints/{won.job_id}"), every_steps=settings.checkpoint_every_steps
    )
    keep_checkpoints = False  # only a job that will resume keeps them
    try:
        job, train_ds, val_ds, test_ds = _load_rows(won.job_id)
        sweep_id = job.sweep_id
        base = get_base_model(settings, job.base_model)
        if base is None:
            raise JobInputError(f"Base model {job.base_model!r} is no longer available.")
        strategy = _strategy_adapter.validate_python(job.strategy)
        hp = Hyperparameters.model_validate(job.hyperparameters)
        label_names = sorted(train_ds.labels)
        train, validation = _examples(job, train_ds, val_ds, storage, label_names, hp)
        test = _read(test_ds, job, storage, label_names) if test_ds is not None else None
        aux_texts = _aux_texts(strategy.aux_dataset_ids(), storage)

        from worker.core.device import select_device
        from worker.features import FeatureCache
        from worker.reporting import (
            build_report,
            final_evaluation,
            trainable_parameters,
            write_report,
        )
        from worker.strategies.registry import train_model

        feature_cache = FeatureCache.from_settings(settings)  # None: feature_cache_bytes is 0
        callbacks = DbCallbacks(store, heartbeat, interval_s=settings.progress_write_interval_s)
        device = select_device(None)
        started = time.monotonic()
        trained = train_model(
            base_model_dir=base.path,
            task=job.task,
            label_names=label_names,
            train=train,
            validation=validation,
            strategy=strategy,
            hp=hp,
            callbacks=callbacks,
            aux_texts=aux_texts,
            checkpoint=checkpoints,
            device=device,
            feature_cache=feature_cache,
        )
        train_seconds = time.monotonic() - started
        callbacks.on_event(
            "evaluating",
            "Evaluating the served weights on the validation set"
            + (" and the test set." if test is not None else "."),
        )
        evaluation = final_evaluation(
            trained,
            validation=validation,
            test=test,
            hp=hp,
            device=device,
            feature_cache=feature_cache,
        )
        # the job's metrics are the served (selected) evaluation's, not the last one's
        metrics: dict[str, Any] = {
            k: float(v)
            for k, v in trained.metrics.items()
            if isinstance(v, (int, float)) and is_scalar_metric(k)
        }
        metrics.update(evaluation.summary_metrics())
        metrics["trainable_parameters"] = trainable_parameters(trained)
        metrics["train_seconds"] = round(train_seconds, 3)

        from worker.artifacts import write_artifact

        model_id = new_id("mdl")
        relpath = storage.model_relpath(model_id)
        staging = storage.path(relpath)
        staging.parent.mkdir(parents=True, exist_ok=True)
        write_artifact(
            trained,
            staging,
            manifest={
                "model_id": model_id,
                "job_id": job.id,
                "task": job.task,
                "labels": label_names,
                "base_model": {"id": base.id, "path": str(base.path)},
                "strategy": job.strategy,
                "hyperparameters": job.hyperparameters,
                "metrics": metrics,
                "calibration": evaluation.calibration.to_json(),
                "serving_precision": evaluation.precision,
                "selection": trained.selection,
            },
        )
        size = sum(f.stat().st_size for f in staging.rglob("*") if f.is_file())
        report = build_report(
            job_id=job.id,
            model_id=model_id,
            trained=trained,
            evaluation=evaluation,
            cost={
                "train_seconds": round(train_seconds, 3),
                "trainable_parameters": metrics["trainable_parameters"],
                "artifact_bytes": size,
            },
        )
        report_dir = write_report(report, storage.path(storage.report_relpath(job.id)))
        model = Model(
            id=model_id,
            tenant_id=job.tenant_id,
            job_id=job.id,
            base_model=base.id,
            task=job.task,
            strategy=str(job.strategy["name"]),
            labels=label_names,
            metrics=metrics,
            storage_path=relpath,
            size_bytes=size,
        )
        progress = {**callbacks.progress, "percent": 100.0, "eta_seconds": 0.0}
        store.succeed(model=model, metrics=metrics, progress=progress, selection=trained.selection)
        staging = report_dir = None  # registered: it is the model now
        log.info("job %s succeeded: model %s %s", job.id, model_id, metrics)
        status = "succeeded"
        return status
    except TrainingReleased:
        keep_checkpoints = True
        store.release(
            message="The worker is shutting down; the job goes back to the queue and resumes "
            "from its checkpoint."
        )
        log.info("job %s released (worker shutting down)", won.job_id)
        return "released"
    except TrainingCancelled:
        store.finish(status="cancelled", code=None, message="Cancelled while running.")
        log.info("job %s cancelled", won.job_id)
        status = "cancelled"
        return status
    except LeaseLost:
        keep_checkpoints = True  # whoever holds the job now may resume from them
        log.warning("job %s: lease lost; stopped without further writes", won.job_id)
        return None
    except torch.OutOfMemoryError:
        log.exception("job %s ran out of memory", won.job_id)
        _fail(
            store,
            "out_of_memory",
            "The accelerator ran out of memory. Try a smaller "
            "batch_size or max_length, or a lighter strategy (lora, linear_probe).",
        )
        status = "failed"
        return status
    except JobInputError as exc:
        _fail(store, "invalid_job", str(exc))
        status = "failed"
        return status
    except Exception as exc:
        log.exception("job %s failed", won.job_id)
        _fail(store, "training_error", f"{type(exc).__name__}: {exc}"[:2000])
        status = "failed"
        return status
    finally:
        if staging is not None and staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
        if report_dir is not None and report_dir.exists():
            shutil.rmtree(report_dir, ignore_errors=True)
        if status is not None and sweep_id is not None:
            settle_sweeps([sweep_id])
        if not keep_checkpoints:
            checkpoints.remove_all()


def _fail(store: JobStore, code: str, message: str) -> None:
    if not store.finish(status="failed", code=code, message=message):
        log.warning("job %s: could not record failure, lease lost", store.claim.job_id)


def _load_rows(job_id: str) -> tuple[Job, Dataset, Dataset | None, Dataset | None]:
    with session_scope() as s:
        job = s.get(Job, job_id)
        assert job is not None
        train_ds = s.get(Dataset, job.dataset_id)
        if train_ds is None or train_ds.deleted_at is not None:
            raise JobInputError(f"Dataset {job.dataset_id!r} was deleted.")
        others: list[Dataset | None] = []
        for kind, dataset_id in (
            ("Validation", job.validation_dataset_id),
            ("Test", job.test_dataset_id),
        ):
            ds = s.get(Dataset, dataset_id) if dataset_id else None
            if dataset_id and (ds is None or ds.deleted_at is not None):
                raise JobInputError(f"{kind} dataset {dataset_id!r} was deleted.")
            others.append(ds)
        s.expunge_all()
        return job, train_ds, others[0], others[1]


def _aux_texts(ids: dict[str, str], storage: Storage) -> dict[str, list[str]]:
    """The texts of each extra dataset a strategy reads (e.g. dann's target domain)."""
    import pyarrow.parquet as pq

    texts: dict[str, list[str]] = {}
    with session_scope() as s:
        for field, dataset_id in ids.items():
            ds = s.get(Dataset, dataset_id)
            if ds is None or ds.deleted_at is not None:
                raise JobInputError(f"Dataset {dataset_id!r} ({field}) was deleted.")
            path = storage.path(ds.storage_path)
            texts[field] = [str(t) for t in pq.read_table(path, columns=["text"]).column(0)]
    return texts


def _read(ds: Dataset, job: Job, storage: Storage, label_names: list[str]) -> Any:
    from worker.data_loading import read_examples

    return read_examples(storage.path(ds.storage_path), task=job.task, label_names=label_names)


def _examples(
    job: Job,
    train_ds: Dataset,
    val_ds: Dataset | None,
    storage: Storage,
    label_names: list[str],
    hp: Hyperparameters,
) -> tuple[Any, Any]:
    from worker.data_loading import split

    full = _read(train_ds, job, storage, label_names)
    if val_ds is not None:
        return full, _read(val_ds, job, storage, label_names)
    if len(full) < 4:
        raise JobInputError("The dataset is too small to split off a validation set.")
    return split(full, fraction=hp.validation_fraction, seed=hp.seed, task=job.task)
