"""The progress a training worker writes: percent and ETA, timed by a fake clock."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import configure, reset_caches, truncate_all
from tests.integration.test_leases import make_jobs


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def job_id(sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    configure(
        monkeypatch,
        db_url=sqlite_url,
        data_dir=tmp_path / "data",
        broker_url="redis://127.0.0.1:6379/15",
    )
    (created,) = make_jobs(1, tenant_name="progress")
    yield created
    reset_caches()
    truncate_all(sqlite_url)


def stored_progress(job_id: str) -> dict[str, Any]:
    from app.db import session_scope
    from app.orm import Job

    with session_scope() as s:
        job = s.get(Job, job_id)
        assert job is not None
        return dict(job.progress)


def callbacks(job_id: str, clock: FakeClock) -> Any:
    from worker.job_store import JobStore, claim
    from worker.progress import DbCallbacks, Heartbeat

    claimed = claim(job_id, lease_seconds=60)
    assert claimed is not None
    store = JobStore(claimed, lease_seconds=60)
    # the heartbeat thread is not started: its flags stay clear, so no step is stopped
    return DbCallbacks(store, Heartbeat(store, lease_seconds=60), interval_s=0.0, clock=clock)


@pytest.mark.parametrize("resumed_at", [0, 50])
def test_eta_counts_only_this_attempts_steps(job_id: str, resumed_at: int) -> None:
    """The rate is this attempt's time over this attempt's steps, whether the attempt started
    at step 0 or resumed at step 50 (before, a resume divided by all 60 steps: ETA 16.7 s
    instead of 100 s)."""
    clock = FakeClock()
    cb = callbacks(job_id, clock)
    cb.on_train_begin(total_steps=100, epochs=2)
    clock.advance(5.0)  # loading and skipping to the resume point: not a step
    for step in range(resumed_at + 1, resumed_at + 11):
        clock.advance(2.0)
        cb.on_step_end(epoch=1, step=step, total_steps=100, loss=0.5)
    left = 100 - (resumed_at + 10)
    progress = stored_progress(job_id)
    assert progress["step"] == resumed_at + 10
    assert progress["percent"] == resumed_at + 10
    # 25 s for 10 steps (the 5 s before the first step counted in it)
    assert progress["eta_seconds"] == pytest.approx(2.5 * left, abs=0.1)


def test_feature_pass_reports_its_percent_and_eta(job_id: str) -> None:
    """linear_probe's feature pass (most of the job) reports its share done and an ETA."""
    clock = FakeClock()
    cb = callbacks(job_id, clock)
    clock.advance(30.0)  # loading the tokenizer and model: not part of the pass
    seen = []
    for done in range(16, 161, 16):  # 160 examples, 16 a batch, 3 s a batch
        clock.advance(3.0)
        cb.on_phase_progress(phase="extracting_features", done=done, total=160)
        seen.append(stored_progress(job_id))
    assert [p["phase_done"] for p in seen] == list(range(16, 161, 16))
    assert [p["percent"] for p in seen] == [10.0 * i for i in range(1, 11)]
    # no ETA from the first batch alone; then 3 s for each 16 examples left
    assert seen[0]["eta_seconds"] is None
    assert [p["eta_seconds"] for p in seen[1:]] == [3.0 * (10 - i) for i in range(2, 11)]
    assert all(p["phase"] == "extracting_features" for p in seen)

    # training follows with its own clock and its own percent
    cb.on_train_begin(total_steps=10, epochs=1)
    clock.advance(0.5)
    cb.on_step_end(epoch=1, step=1, total_steps=10, loss=0.5)
    training = stored_progress(job_id)
    assert (training["phase"], training["percent"], training["eta_seconds"]) == (
        "training",
        10.0,
        4.5,
    )
