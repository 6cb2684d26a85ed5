"""``tuneserve jobs watch``: a live progress bar and the latest metrics until the job ends.

The job is polled (``GET /v1/jobs/{id}``, once a second): its ``progress`` (phase, epoch, step
of total, percent and ETA of the phase) drives a rich progress bar, its ``metrics`` (the latest
training loss and validation metrics) a table under it. The exit status is the job's outcome:
0 succeeded, 1 failed, 3 cancelled (2 is argparse's usage error; 4 a client error).
"""

from __future__ import annotations

import sys
import time
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn
from rich.table import Table

from tuneserve.cli.output import emit_json
from tuneserve.client import Client
from tuneserve.models import Job

EXIT_STATUS = {"succeeded": 0, "failed": 1, "cancelled": 3}
TERMINAL = frozenset(EXIT_STATUS)
POLL_S = 1.0


def _eta(seconds: float | None) -> str:
    if seconds is None:
        return "ETA -"
    minutes, secs = divmod(round(seconds), 60)
    return f"ETA {minutes}:{secs:02d}"


def describe(job: Job) -> str:
    """The bar's caption: status, phase, epoch and step, ETA."""
    p = job.progress
    steps = f"step {p.step}/{p.total_steps}" if p.total_steps else f"step {p.step}"
    return (
        f"{job.status} · {p.phase or '-'} · epoch {p.epoch:.2f} · {steps} · {_eta(p.eta_seconds)}"
    )


def metrics_table(job: Job) -> Table:
    grid = Table(title="latest metrics", title_justify="left")
    grid.add_column("metric")
    grid.add_column("value", justify="right")
    for name, value in sorted(job.metrics.items()):
        if isinstance(value, int | float) and "/" not in name:
            grid.add_row(name, f"{value:.4f}" if isinstance(value, float) else str(value))
    return grid


def watch_job(client: Client, job_id: str, *, as_json: bool = False) -> int:
    """Follow the job until it ends; its outcome as the exit status."""
    job = client.jobs.get(job_id)
    if as_json:
        while job.status not in TERMINAL:
            time.sleep(POLL_S)
            job = client.jobs.get(job_id)
        emit_json(job)
        return EXIT_STATUS[job.status]
    console = Console(stderr=not sys.stdout.isatty())
    bar = Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn())
    task = bar.add_task(describe(job), total=100)
    with Live(Group(bar, metrics_table(job)), console=console, refresh_per_second=4) as live:
        while True:
            bar.update(task, completed=job.progress.percent, description=describe(job))
            live.update(Group(bar, metrics_table(job)))
            if job.status in TERMINAL:
                break
            time.sleep(POLL_S)
            job = client.jobs.get(job_id)
    _summary(console, job)
    return EXIT_STATUS[job.status]


def _summary(console: Console, job: Job) -> None:
    outcome: dict[str, Any] = {"job": job.id, "status": job.status}
    if job.model_id:
        outcome["model"] = job.model_id
    if job.error:
        outcome["error"] = f"{job.error.code}: {job.error.message}"
    console.print(" · ".join(f"{k} {v}" for k, v in outcome.items()))
