"""Job records: submit (validated against dataset and base model), read, cancel, events."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.audit.run import Scanned, audit_job, scan_job
from app.base_models.decoders import is_decoder_config
from app.base_models.registry import BaseModelInfo, get_base_model
from app.config import Settings
from app.contract.hyperparameters import MULTILABEL_METRICS, SINGLE_LABEL_METRICS
from app.contract.strategies import STRATEGY_CONFIGS, AutoStrategy
from app.contract.tasks import IMAGE_TASKS, MULTILABEL_TASKS, PAIR_TASK
from app.datasets.orm import Dataset
from app.db import utcnow
from app.errors import Conflict, InvalidInput, NotFound, ServiceUnavailable
from app.idempotency import Idempotent
from app.jobs import auto_hyperparameters as auto
from app.jobs import lifecycle
from app.jobs.lifecycle import add_event
from app.jobs.orm import TERMINAL_STATUSES, Job, JobEvent, JobMetric
from app.jobs.schemas import JobCreate
from app.limits.quotas import reserve_job
from app.pagination import paginate
from app.tasks import TRAIN_TASK, broker_ping, enqueue_after_commit


def _fingerprint(body: JobCreate) -> str:
    return hashlib.sha256(
        json.dumps(body.model_dump(mode="json"), sort_keys=True).encode()
    ).hexdigest()


def _dataset_for_job(session: Session, *, tenant_id: str, dataset_id: str, field: str) -> Dataset:
    ds = session.get(Dataset, dataset_id)
    if ds is None or ds.tenant_id != tenant_id or ds.deleted_at is not None:
        raise NotFound(f"Dataset {dataset_id!r} not found.", details={"field": field})
    if ds.status != "ready":
        raise InvalidInput(
            f"Dataset {dataset_id!r} is {ds.status}, not ready.", details={"field": field}
        )
    return ds


@dataclass(frozen=True)
class Submission:
    """What validating a job request found: its training dataset and its base model."""

    dataset: Dataset
    base: BaseModelInfo


def validate_submission(
    session: Session, *, tenant_id: str, body: JobCreate, settings: Settings
) -> Submission:
    base = get_base_model(settings, body.base_model)
    if base is None:
        raise InvalidInput(
            f"Unknown base model {body.base_model!r}; see GET /v1/base-models.",
            details={"field": "base_model"},
        )
    dataset = _dataset_for_job(
        session, tenant_id=tenant_id, dataset_id=body.dataset_id, field="dataset_id"
    )
    family = "image" if dataset.task.startswith("image") else "text"
    if family not in base.task_families:
        raise InvalidInput(
            f"Base model {base.id!r} is a {'/'.join(base.task_families)} model; dataset "
            f"{dataset.id!r} is {dataset.task}.",
            details={"field": "base_model"},
        )
    strategy = body.strategy
    decoder = is_decoder_config(
        {"model_type": base.model_type, "architectures": [base.architecture]}
    )
    if strategy.needs_masked_lm and decoder:
        raise InvalidInput(
            f"Strategy {strategy.name!r} continues masked-LM pretraining, which needs an encoder "
            f"base (BERT family); {base.id!r} is a decoder ({base.model_type}).",
            details={"field": "base_model"},
        )
    if strategy.needs_zero_shot and not base.zero_shot:
        raise InvalidInput(
            f"Strategy {strategy.name!r} needs an image-text base with its text tower and "
            f"tokenizer (CLIP); {base.id!r} is not one (see zero_shot in GET /v1/base-models).",
            details={"field": "base_model"},
        )
    if dataset.task not in strategy.supported_tasks:
        raise InvalidInput(
            f"Strategy {strategy.name!r} cannot train on a {dataset.task!r} dataset; it needs "
            f"one of: {', '.join(sorted(strategy.supported_tasks))}.",
            details={"field": "dataset_id"},
        )
    for field, required_task in strategy.aux_datasets.items():
        aux_id = getattr(strategy, field, None)
        if not aux_id:
            raise InvalidInput(
                f"Strategy {strategy.name!r} needs strategy.{field}: a {required_task} dataset.",
                details={"field": f"strategy.{field}"},
            )
        aux = _dataset_for_job(
            session, tenant_id=tenant_id, dataset_id=aux_id, field=f"strategy.{field}"
        )
        if aux.task != required_task:
            raise InvalidInput(
                f"strategy.{field} must be a {required_task} dataset; {aux_id!r} is {aux.task}.",
                details={"field": f"strategy.{field}"},
            )
    if len(dataset.labels) < 2:
        raise InvalidInput(
            "The dataset needs at least two labels.", details={"field": "dataset_id"}
        )
    for field, other_id in (
        ("validation_dataset_id", body.validation_dataset_id),
        ("test_dataset_id", body.test_dataset_id),
    ):
        if other_id is not None:
            _check_evaluation_dataset(
                session, tenant_id=tenant_id, dataset=dataset, dataset_id=other_id, field=field
            )
    check_selection_metric(
        body.hyperparameters.early_stopping.metric,
        dataset.task,
        field="hyperparameters.early_stopping.metric",
    )
    check_long_text(body.hyperparameters.long_text, dataset.task)
    return Submission(dataset=dataset, base=base)


def _check_evaluation_dataset(
    session: Session, *, tenant_id: str, dataset: Dataset, dataset_id: str, field: str
) -> Dataset:
    """A validation or test dataset: same task, no labels the training data lacks."""
    other = _dataset_for_job(session, tenant_id=tenant_id, dataset_id=dataset_id, field=field)
    kind = field.removesuffix("_dataset_id")
    if other.task != dataset.task:
        raise InvalidInput(
            f"The {kind} dataset is {other.task!r}; the dataset is {dataset.task!r}.",
            details={"field": field},
        )
    unknown = sorted(set(other.labels) - set(dataset.labels))
    if unknown:
        raise InvalidInput(
            f"The {kind} dataset has labels the training data lacks: {unknown[:10]}.",
            details={"field": field, "labels": unknown[:100]},
        )
    return other


def check_selection_metric(metric: str, task: str, *, field: str) -> None:
    """A 422 naming ``field`` when ``metric`` does not exist for the task."""
    multilabel = task in MULTILABEL_TASKS
    if (multilabel and metric in SINGLE_LABEL_METRICS) or (
        not multilabel and metric in MULTILABEL_METRICS
    ):
        raise InvalidInput(
            f"Metric {metric!r} does not exist for a {task!r} task.", details={"field": field}
        )


def check_long_text(long_text: str, task: str) -> None:
    """A 422 when ``long_text`` asks for more than truncation where there is no single text
    to cut (text pairs, images)."""
    if long_text != "truncate" and (task == PAIR_TASK or task in IMAGE_TASKS):
        raise InvalidInput(
            f"long_text {long_text!r} reads single texts; a {task!r} task can only truncate.",
            details={"field": "hyperparameters.long_text"},
        )


def create_job(
    session: Session,
    *,
    tenant_id: str,
    body: JobCreate,
    settings: Settings,
    idempotency_key: str | None,
    sweep_id: str | None = None,
    submission: Submission | None = None,
) -> tuple[Job, bool]:
    """Create a queued job and send ``train(job_id)`` after commit. Returns (job, created).
    ``submission``: the request's validation, when the caller has already done it."""
    fingerprint = _fingerprint(body)
    keyed = Idempotent(
        Job,
        tenant_id=tenant_id,
        key=idempotency_key,
        same_request=lambda existing: existing.request_fingerprint == fingerprint,
        id_field="job_id",
    )
    replayed = keyed.replay(session)
    if replayed is not None:
        return replayed, False
    if submission is None:
        submission = validate_submission(session, tenant_id=tenant_id, body=body, settings=settings)
    dataset = submission.dataset
    reserve_job(session, tenant_id=tenant_id, settings=settings)  # 429 past the tenant's quota
    scanned = scan_job(session, body=body, dataset=dataset, base=submission.base, settings=settings)
    body, choices = choose_hyperparameters(body, submission, scanned)
    # a fatal finding raises AuditFailed (422 audit_failed) and nothing is created
    findings = audit_job(body=body, dataset=dataset, scanned=scanned)
    if not broker_ping():
        raise ServiceUnavailable(
            "The job queue (Redis) is unavailable; the job was not created. Try again shortly.",
            code="queue_unavailable",
        )
    job = Job(
        tenant_id=tenant_id,
        status="queued",
        base_model=body.base_model,
        task=dataset.task,
        dataset_id=dataset.id,
        validation_dataset_id=body.validation_dataset_id,
        test_dataset_id=body.test_dataset_id,
        sweep_id=sweep_id,
        strategy=body.strategy.model_dump(mode="json"),
        hyperparameters=body.hyperparameters.model_dump(mode="json"),
        idempotency_key=idempotency_key,
        request_fingerprint=fingerprint,
        progress={},
        metrics={},
        audit=[f.model_dump(mode="json") for f in findings],
        auto=[c.as_json() for c in choices],
        attempt=0,
        max_attempts=settings.max_attempts,
        enqueued_at=utcnow(),
    )
    winner = keyed.insert(session, job)  # a concurrent retry with the same key won the race
    if winner is not None:
        return winner, False
    add_event(session, job.id, "queued", "Job accepted and queued.")
    if choices:
        summary = "; ".join(f"{c.field} {_shown(c.value)} ({c.reason})" for c in choices)
        data = {"choices": [c.as_json() for c in choices]}
        add_event(session, job.id, "auto", f"Chosen automatically: {summary}.", data)
    for finding in findings:
        add_event(session, job.id, "audit", finding.message, finding.model_dump(mode="json"))
    enqueue_after_commit(session, TRAIN_TASK, [job.id])
    return job, True


def choose_hyperparameters(
    body: JobCreate, submission: Submission, scanned: Scanned
) -> tuple[JobCreate, list[auto.Choice]]:
    """``body`` with the hyperparameters the request left to ``auto`` chosen from its data
    (app/jobs/auto_hyperparameters.py), and the choices."""
    dataset, base, hp = submission.dataset, submission.base, body.hyperparameters
    counts = (dataset.report or {}).get("label_counts") or {}
    data = auto.profile(
        task=dataset.task,
        num_rows=dataset.num_rows,
        label_counts={str(k): int(v) for k, v in counts.items()},
        validation_held_out=0.0 if body.validation_dataset_id else hp.validation_fraction,
        modality=base.modality,
        family=base.family,
        parameters=base.parameter_count,
        tokens_p90=scanned.tokens_p90,
        model_max=scanned.model_max,
    )
    requested = set(hp.model_fields_set)
    strategy = body.strategy
    chosen, choices = auto.choose(hp, strategy, data, requested=requested)
    if isinstance(strategy, AutoStrategy):
        for name in strategy.candidates or ():
            if dataset.task not in STRATEGY_CONFIGS[name].supported_tasks:
                raise InvalidInput(
                    f"strategy.candidates: {name!r} cannot train on a {dataset.task!r} dataset.",
                    details={"field": "strategy.candidates"},
                )
        # each candidate gets its own rate and epochs (in the plan); the rest is shared
        per_candidate = {"learning_rate", "epochs"}
        choices = [c for c in choices if c.field not in per_candidate]
        chosen = chosen.model_copy(update={k: getattr(hp, k) for k in per_candidate})
        strategy, planned = auto.plan_auto(chosen, strategy, data, requested=requested)
        choices.insert(0, planned)
    update = {"hyperparameters": chosen, "strategy": strategy}
    return body.model_copy(update=update), choices


def _shown(value: object) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items() if k == "metric")
    return f"{value:g}" if isinstance(value, float) else str(value)


def get_job(session: Session, *, tenant_id: str, job_id: str) -> Job:
    job = session.get(Job, job_id)
    if job is None or job.tenant_id != tenant_id:
        raise NotFound(f"Job {job_id!r} not found.")
    return job


def list_jobs(
    session: Session, *, tenant_id: str, status: str | None, cursor: str | None, limit: int
) -> list[Job]:
    stmt = select(Job).where(Job.tenant_id == tenant_id)
    if status:
        stmt = stmt.where(Job.status == status)
    stmt = paginate(stmt, created_col=Job.created_at, id_col=Job.id, cursor=cursor, limit=limit)
    return list(session.scalars(stmt))


def cancel_job(session: Session, *, tenant_id: str, job_id: str) -> Job:
    """Queued: cancelled at once. Running: a flag the training loop checks every step."""
    job = get_job(session, tenant_id=tenant_id, job_id=job_id)
    lifecycle.cancel(session, job.id)
    session.flush()
    session.refresh(job)
    if job.status in TERMINAL_STATUSES and job.status != "cancelled":
        raise Conflict(
            f"Job {job.id!r} already {job.status}; it cannot be cancelled.",
            code="job_finished",
        )
    return job


def list_events(session: Session, *, job: Job, after: int | None, limit: int) -> list[JobEvent]:
    stmt = select(JobEvent).where(JobEvent.job_id == job.id)
    if after is not None:
        stmt = stmt.where(JobEvent.id > after)
    return list(session.scalars(stmt.order_by(JobEvent.id).limit(limit + 1)))


def list_metrics(session: Session, *, job: Job) -> list[JobMetric]:
    stmt = select(JobMetric).where(JobMetric.job_id == job.id).order_by(JobMetric.id)
    return list(session.scalars(stmt))
