"""Typed results: what the API answers, as pydantic models.

Every model allows extra fields (``extra="allow"``): a field a newer server adds is kept (read
it as an attribute or in ``model_extra``) and never breaks an older client. Fields a server
might leave out have defaults.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

#: job (and sweep) statuses that never change again; also the kinds of a job's last event
TERMINAL_STATUSES = frozenset({"succeeded", "failed", "cancelled"})


class APIModel(BaseModel):
    """Base of every result: unknown fields are kept, nothing is validated strictly."""

    model_config = ConfigDict(extra="allow", protected_namespaces=())


T = TypeVar("T", bound=APIModel)


class Page(APIModel, Generic[T]):
    """One page of a list: ``data`` and the cursor of the next page (None on the last)."""

    data: list[T]
    next_cursor: str | None = None


# --- datasets ---------------------------------------------------------------------------


class Dataset(APIModel):
    id: str
    name: str = ""
    task: str = ""
    status: str = ""
    format: str = ""
    filename: str = ""
    size_bytes: int = 0
    sha256: str = ""
    num_rows: int = 0
    labels: list[str] = Field(default_factory=list)
    num_labels: int = 0
    labels_truncated: bool = False
    column_mapping: dict[str, Any] = Field(default_factory=dict)
    report: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime | None = None


class LabelCount(APIModel):
    label: str
    count: int


class DatasetPreview(APIModel):
    id: str
    columns: list[str] = Field(default_factory=list)
    rows: list[dict[str, Any]] = Field(default_factory=list)
    total_rows: int = 0
    truncated_cells: list[dict[str, Any]] = Field(default_factory=list)


# --- jobs -------------------------------------------------------------------------------


class Progress(APIModel):
    phase: str | None = None
    phase_done: int | None = None
    phase_total: int | None = None
    epoch: float = 0
    step: int = 0
    total_steps: int | None = None
    percent: float = 0.0
    eta_seconds: float | None = None


class JobError(APIModel):
    code: str
    message: str = ""


class Selection(APIModel):
    metric: str
    mode: str
    selected_epoch: float | None = None
    selected_step: int | None = None
    selected: dict[str, float] = Field(default_factory=dict)
    last: dict[str, float] = Field(default_factory=dict)
    stopped_early: bool = False
    evaluations: int = 0
    #: the auto strategy's bake-off (rank metric, runs, winner, served); None otherwise
    bakeoff: dict[str, Any] | None = None


class AutoChoice(APIModel):
    """A hyperparameter the request left to ``auto``: what was chosen and why."""

    field: str
    value: Any = None
    reason: str = ""


class AuditFinding(APIModel):
    code: str
    severity: str
    message: str = ""
    suggestion: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)


class Job(APIModel):
    id: str
    status: str
    base_model: str = ""
    task: str = ""
    dataset_id: str = ""
    validation_dataset_id: str | None = None
    test_dataset_id: str | None = None
    sweep_id: str | None = None
    strategy: dict[str, Any] = Field(default_factory=dict)
    hyperparameters: dict[str, Any] = Field(default_factory=dict)
    progress: Progress = Field(default_factory=Progress)
    metrics: dict[str, Any] = Field(default_factory=dict)
    selection: Selection | None = None
    audit: list[AuditFinding] = Field(default_factory=list)
    auto: list[AutoChoice] = Field(default_factory=list)
    model_id: str | None = None
    error: JobError | None = None
    attempt: int = 0
    max_attempts: int = 0
    cancel_requested: bool = False
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None

    @property
    def done(self) -> bool:
        """Whether the job is over (succeeded, failed or cancelled)."""
        return self.status in TERMINAL_STATUSES


class JobEvent(APIModel):
    id: int
    kind: str
    message: str = ""
    data: dict[str, Any] | None = None
    created_at: datetime | None = None

    @property
    def terminal(self) -> bool:
        """Whether this is the job's last event (its kind is the final status)."""
        return self.kind in TERMINAL_STATUSES


class MetricPoint(APIModel):
    split: str
    epoch: float
    step: int
    values: dict[str, float] = Field(default_factory=dict)
    created_at: datetime | None = None


class JobMetrics(APIModel):
    job_id: str
    series: list[MetricPoint] = Field(default_factory=list)


class JobReport(APIModel):
    """The evaluation report of a succeeded job; its many fields are kept as they come."""


# --- sweeps -----------------------------------------------------------------------------


class LeaderboardEntry(APIModel):
    rank: int | None = None
    job_id: str
    strategy: str = ""
    learning_rate: float | None = None
    status: str = ""
    value: float | None = None
    metrics: dict[str, float] = Field(default_factory=dict)
    model_id: str | None = None
    error_code: str | None = None


class Sweep(APIModel):
    id: str
    status: str
    metric: str = ""
    mode: str = ""
    base_model: str = ""
    dataset_id: str = ""
    request: dict[str, Any] = Field(default_factory=dict)
    winner_job_id: str | None = None
    model_id: str | None = None
    created_at: datetime | None = None
    finished_at: datetime | None = None
    leaderboard: list[LeaderboardEntry] = Field(default_factory=list)

    @property
    def done(self) -> bool:
        return self.status in TERMINAL_STATUSES


# --- models and predictions -------------------------------------------------------------


class Model(APIModel):
    id: str
    job_id: str = ""
    base_model: str = ""
    task: str = ""
    strategy: str = ""
    labels: list[str] = Field(default_factory=list)
    metrics: dict[str, Any] = Field(default_factory=dict)
    size_bytes: int = 0
    created_at: datetime | None = None


class LabelScore(APIModel):
    label: str
    score: float


class Prediction(APIModel):
    label: str
    score: float
    top_k: list[LabelScore] = Field(default_factory=list)
    labels: list[str] | None = None


class BaseModelInfo(APIModel):
    """A pretrained model of ``GET /v1/base-models``."""

    id: str
    modality: str | None = None
    family: str | None = None
    tasks: list[str] = Field(default_factory=list)


# --- keys and usage ---------------------------------------------------------------------


class Key(APIModel):
    id: str
    tenant_id: str = ""
    name: str = ""
    prefix: str = ""
    scopes: list[str] = Field(default_factory=list)
    created_at: datetime | None = None
    expires_at: datetime | None = None
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None


class KeyCreated(Key):
    key: str = Field(description="The API key itself: shown this once.")


class Usage(APIModel):
    """``GET /v1/usage``: the tenant's quotas used and their limits (kept as they come)."""

    tenant_id: str
    key_id: str = ""
    key_scopes: list[str] = Field(default_factory=list)


class ExportStatus(APIModel):
    """An export a worker is still building (a LoRA merge, a head as a full model)."""

    id: str
    model_id: str = ""
    variant: str = ""
    status: str = ""
    error: JobError | None = None
    attempt: int = 0
