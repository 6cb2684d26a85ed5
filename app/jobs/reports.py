"""Where a job's evaluation report lives and how the API reads it.

The worker writes ``reports/{job_id}/report.json`` and ``reports/{job_id}/plots/{name}.png``
as one directory, atomically, before it marks the job succeeded (``worker.reporting``). The
API only reads files: it never renders, so it stays free of matplotlib and torch.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from app.errors import Conflict, NotFound
from app.jobs.orm import Job
from app.storage import Storage

REPORT_FILE = "report.json"
PLOTS_DIR = "plots"
#: the plots a report has: training curves, the confusion matrix, the reliability diagram
PLOT_NAMES: tuple[str, ...] = ("curves", "confusion_matrix", "calibration")


def _report_dir(job: Job, storage: Storage) -> Path:
    if job.status != "succeeded":
        raise Conflict(
            f"Job {job.id!r} is {job.status}; a report exists once it has succeeded.",
            code="report_not_ready",
        )
    directory = storage.path(storage.report_relpath(job.id))
    if not (directory / REPORT_FILE).is_file():
        raise NotFound(f"Job {job.id!r} has no evaluation report (it predates reports).")
    return directory


def read_report(job: Job, storage: Storage) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(
        (_report_dir(job, storage) / REPORT_FILE).read_text(encoding="utf-8")
    )
    return data


def available_plots(job: Job, storage: Storage) -> list[str]:
    directory = _report_dir(job, storage) / PLOTS_DIR
    return [name for name in PLOT_NAMES if (directory / f"{name}.png").is_file()]


def plot_path(job: Job, storage: Storage, name: str) -> Path:
    stem = name.removesuffix(".png")
    if stem not in PLOT_NAMES:
        raise NotFound(f"No plot {name!r}; plots are: {', '.join(PLOT_NAMES)}.")
    path = _report_dir(job, storage) / PLOTS_DIR / f"{stem}.png"
    if not path.is_file():
        raise NotFound(f"Job {job.id!r} has no {stem!r} plot (not enough data to draw it).")
    return path


class JobReport(BaseModel):
    """The evaluation report of a succeeded job (``GET /v1/jobs/{id}/report``)."""

    model_config = ConfigDict(extra="allow")

    job_id: str
    model_id: str | None = None
    task: str
    strategy: str
    labels: list[str]
    selection: dict[str, Any] | None = Field(
        None,
        description="metric, mode, the selected and the last evaluation (epoch, step, metrics), "
        "whether training stopped early.",
    )
    history: list[dict[str, float]] = Field(
        description="Every evaluation: epoch (fractional for step evaluations), step, "
        "train_loss and the validation metrics."
    )
    validation: dict[str, Any] | None = Field(
        None,
        description="The served model on the validation set: loss, accuracy, macro/micro F1, "
        "per-class precision/recall/F1/support, the confusion matrix (multi-label: per-label "
        "counts and tuned thresholds), calibration (ECE before and after temperature scaling).",
    )
    test: dict[str, Any] | None = Field(
        None, description="The same, on the test dataset, evaluated once at the end."
    )
    calibration: dict[str, Any] = Field(
        default_factory=dict, description="temperature and thresholds applied when serving."
    )
    cost: dict[str, Any] = Field(
        default_factory=dict,
        description="train_seconds, trainable_parameters, artifact_bytes.",
    )
    plots: dict[str, str] = Field(default_factory=dict, description="Plot name → URL of its PNG.")
