"""The audit's entry points at submit: :func:`scan_job` scans the training dataset (and the
validation and test datasets, if given) once each from the canonical Parquet (the ``auto``
hyperparameters read it too), and :func:`audit_job` runs :data:`~app.audit.checks.CHECKS` on
the scan.

A check that fails unexpectedly is logged and skipped: the audit never fails a submit on odd
data, only on a fatal finding (:class:`AuditFailed`, 422 ``audit_failed``).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

from sqlalchemy.orm import Session

from app.audit.checks import CHECKS, Context
from app.audit.scan import Scan, ScanRequest, Source, scan
from app.audit.tokens import CHARS_PER_TOKEN_CAP, model_max_length
from app.base_models.registry import BaseModelInfo
from app.config import Settings
from app.contract.tasks import LABELED_TASKS
from app.datasets.orm import Dataset
from app.errors import InvalidInput
from app.jobs.schemas import AuditFinding, JobCreate
from app.storage import Storage

logger = logging.getLogger(__name__)


class AuditFailed(InvalidInput):
    """A fatal finding: the job would be meaningless. Details: ``{"findings": [...]}``."""

    code = "audit_failed"


def _source(session: Session, storage: Storage, dataset_id: str | None) -> Source | None:
    ds = session.get(Dataset, dataset_id) if dataset_id else None
    return None if ds is None else Source(ds.id, storage.path(ds.storage_path))


@dataclass(frozen=True)
class Scanned:
    """What :func:`scan_job` read: the scan (None when the data could not be read) and the
    model's own token limit."""

    scan: Scan | None
    model_max: int | None

    @property
    def tokens_p90(self) -> int | None:
        counts = sorted(self.scan.token_counts) if self.scan else []
        return counts[math.ceil(0.9 * len(counts)) - 1] if counts else None


def scan_job(
    session: Session,
    *,
    body: JobCreate,
    dataset: Dataset,
    base: BaseModelInfo,
    settings: Settings,
) -> Scanned:
    """Read a validated submission's data once (a sweep's candidates share the read)."""
    if dataset.task not in LABELED_TASKS:
        return Scanned(None, None)
    model_max: int | None = None
    data: Scan | None = None
    try:
        model_max = model_max_length(base)
        tokenizer_file = base.path / "tokenizer.json"
        storage = Storage.from_settings(settings)
        req = ScanRequest(
            task=dataset.task,
            train=Source(dataset.id, storage.path(dataset.storage_path)),
            validation=_source(session, storage, body.validation_dataset_id),
            test=_source(session, storage, body.test_dataset_id),
            tokenizer_file=tokenizer_file if tokenizer_file.is_file() else None,
            char_cap=CHARS_PER_TOKEN_CAP * (model_max or 8192),
        )
        # a sweep submits several jobs on the same data in one session: read it once
        scans: dict[ScanRequest, Scan] = session.info.setdefault("audit_scans", {})
        data = scans.get(req)
        if data is None:
            data = scans[req] = scan(req)
    except Exception:
        logger.exception(
            "audit: cannot read the data of dataset %s; data checks skipped", dataset.id
        )
    return Scanned(data, model_max)


def audit_job(*, body: JobCreate, dataset: Dataset, scanned: Scanned) -> list[AuditFinding]:
    """The findings for a validated submission, in CHECKS order. Raises nothing but
    :class:`AuditFailed` when a finding is fatal."""
    if dataset.task not in LABELED_TASKS:
        return []
    ctx = Context(body=body, dataset=dataset, scan=scanned.scan, model_max=scanned.model_max)
    findings: list[AuditFinding] = []
    for check in CHECKS:
        try:
            findings += check(ctx)
        except Exception:
            logger.exception(
                "audit: check %s failed on dataset %s; skipped", check.__name__, dataset.id
            )
    fatal = [f for f in findings if f.severity == "fatal"]
    if fatal:
        raise AuditFailed(
            "The job was not created: "
            + " ".join(f.message for f in fatal)
            + " See details.findings.",
            details={"findings": [f.model_dump(mode="json") for f in findings]},
        )
    return findings
