"""Claims, fencing and the reaper against real databases and a real Redis."""

from __future__ import annotations

import multiprocessing as mp
import random
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import redis

from tests.conftest import configure, reset_caches, truncate_all

REDIS_DB = 11


@pytest.fixture(params=["sqlite", "postgres"])
def env(
    request: pytest.FixtureRequest, redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    db_url = str(request.getfixturevalue(f"{request.param}_url"))
    broker = f"{redis_url}/{REDIS_DB}"
    configure(
        monkeypatch,
        db_url=db_url,
        data_dir=tmp_path / "data",
        broker_url=broker,
        lease_seconds="30",
        resend_after_s="0",
    )
    redis.Redis.from_url(broker).flushdb()
    yield db_url
    reset_caches()
    truncate_all(db_url)
    redis.Redis.from_url(broker).flushdb()


def make_jobs(n: int, *, status: str = "queued") -> list[str]:
    from app.db import session_scope, utcnow
    from app.orm import Dataset, Job
    from app.tenants.service import get_or_create_tenant

    ids = []
    with session_scope() as s:
        tenant = get_or_create_tenant(s, name="leases")
        ds = Dataset(
            tenant_id=tenant.id,
            name="d",
            task="text-classification",
            format="csv",
            filename="d.csv",
            size_bytes=1,
            sha256="0" * 64,
            num_rows=10,
            labels=["a", "b"],
            storage_path="datasets/x/data.parquet",
        )
        s.add(ds)
        s.flush()
        for _ in range(n):
            job = Job(
                tenant_id=tenant.id,
                status=status,
                base_model="tiny",
                task=ds.task,
                dataset_id=ds.id,
                strategy={"name": "full"},
                hyperparameters={},
                progress={},
                metrics={},
                enqueued_at=utcnow(),
            )
            s.add(job)
            s.flush()
            ids.append(job.id)
    return ids


def _claim_all(args: tuple[str, str, list[str], int]) -> list[str]:
    db_url, data_dir, job_ids, seed = args
    import os

    os.environ["TUNESERVE_DATABASE_URL"] = db_url
    os.environ["TUNESERVE_DATA_DIR"] = data_dir
    from worker.job_store import claim

    order = list(job_ids)
    random.Random(seed).shuffle(order)
    return [job_id for job_id in order if claim(job_id, lease_seconds=60) is not None]


def test_concurrent_claims_take_each_job_exactly_once(env: str, tmp_path: Path) -> None:
    job_ids = make_jobs(40)
    ctx = mp.get_context("spawn")
    with ctx.Pool(4) as pool:
        results = pool.map(
            _claim_all, [(env, str(tmp_path / "data"), job_ids, seed) for seed in range(4)]
        )
    claimed = [j for r in results for j in r]
    assert sorted(claimed) == sorted(job_ids)  # every job once, none twice, no lock errors
    from app.db import session_scope
    from app.orm import Job

    with session_scope() as s:
        assert {j.attempt for j in s.query(Job)} == {1}


def _expire(job_id: str) -> None:
    from app.db import session_scope, utcnow
    from app.orm import Job

    with session_scope() as s:
        job = s.get(Job, job_id)
        assert job is not None
        job.lease_expires_at = utcnow() - timedelta(seconds=5)


def test_reaper_requeues_then_fails_a_lost_job_and_fences_the_old_worker(env: str) -> None:
    from app.db import session_scope
    from app.orm import Job, JobEvent
    from worker.job_store import JobStore, LeaseLost, claim
    from worker.maintenance import reap_once

    (job_id,) = make_jobs(1)
    first = claim(job_id, lease_seconds=60)
    assert first is not None and first.attempt == 1
    _expire(job_id)
    report = reap_once()
    assert report.requeued == [job_id]
    with session_scope() as s:
        job = s.get(Job, job_id)
        assert job is not None and job.status == "queued" and job.lease_token is None
    # the lost worker comes back: every write it tries is fenced out
    stale = JobStore(first, lease_seconds=60)
    with pytest.raises(LeaseLost):
        stale.renew_lease()
    with pytest.raises(LeaseLost):
        stale.write_progress(progress={"step": 99})
    assert stale.finish(status="failed", code="x", message="late") is False

    second = claim(job_id, lease_seconds=60)
    assert second is not None and second.attempt == 2
    _expire(job_id)
    report = reap_once()
    assert report.failed == [job_id]
    with session_scope() as s:
        job = s.get(Job, job_id)
        assert job is not None and job.status == "failed" and job.error_code == "worker_lost"
        kinds = [e.kind for e in s.query(JobEvent).filter_by(job_id=job_id).order_by(JobEvent.id)]
    assert kinds == ["started", "requeued", "started", "failed"]
    assert reap_once().failed == []  # nothing twice


def test_reaper_failing_a_sweeps_last_candidate_settles_the_sweep(env: str) -> None:
    from app.db import session_scope
    from app.orm import Job
    from app.sweeps.orm import Sweep
    from worker.job_store import claim
    from worker.maintenance import reap_once

    done_id, lost_id = make_jobs(2)
    with session_scope() as s:
        done, lost = s.get(Job, done_id), s.get(Job, lost_id)
        assert done is not None and lost is not None
        sweep = Sweep(
            tenant_id=lost.tenant_id,
            base_model="tiny",
            dataset_id=lost.dataset_id,
            metric="val_macro_f1",
            mode="max",
            request={},
        )
        s.add(sweep)
        s.flush()
        sweep_id = sweep.id
        done.sweep_id = lost.sweep_id = sweep_id
        done.status, lost.max_attempts = "cancelled", 1
    assert claim(lost_id, lease_seconds=60) is not None
    _expire(lost_id)
    assert reap_once().failed == [lost_id]
    # no reader asked: the reaper itself ended the sweep (no candidate succeeded: failed)
    with session_scope() as s:
        row = s.get(Sweep, sweep_id)
        assert row is not None and row.status == "failed" and row.finished_at is not None
        assert row.winner_job_id is None


def test_reaper_resends_only_messages_the_broker_lost(env: str, redis_url: str) -> None:
    from app.tasks import TRAIN_TASK, send_task
    from worker.maintenance import jobs_in_broker, reap_once

    present, lost = make_jobs(2)
    send_task(TRAIN_TASK, [present])
    assert jobs_in_broker() == {present}
    report = reap_once()
    assert report.resent == [lost]
    assert jobs_in_broker() == {present, lost}
    # a broker restart without persistence loses everything: all are sent again
    redis.Redis.from_url(f"{redis_url}/{REDIS_DB}").flushdb()
    assert sorted(reap_once().resent) == sorted([present, lost])


def test_release_hands_the_job_back_without_burning_an_attempt(env: str) -> None:
    from app.db import session_scope
    from app.orm import Job
    from worker.job_store import JobStore, claim
    from worker.maintenance import jobs_in_broker

    (job_id,) = make_jobs(1)
    won = claim(job_id, lease_seconds=60)
    assert won is not None
    assert JobStore(won, lease_seconds=60).release(message="shutting down")
    with session_scope() as s:
        job = s.get(Job, job_id)
        assert job is not None and job.status == "queued" and job.attempt == 0
    assert jobs_in_broker() == {job_id}
