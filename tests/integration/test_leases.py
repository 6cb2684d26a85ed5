"""Claims, fencing and the reaper against real databases and a real Redis."""

from __future__ import annotations

import multiprocessing as mp
import random
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

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


def make_jobs(n: int, *, status: str = "queued", tenant_name: str = "leases") -> list[str]:
    from app.db import session_scope, utcnow
    from app.orm import Dataset, Job
    from app.tenants.service import get_or_create_tenant

    ids = []
    with session_scope() as s:
        tenant = get_or_create_tenant(s, name=tenant_name)
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


def _done(won: Any) -> None:
    from worker.job_store import JobStore

    assert JobStore(won, lease_seconds=60).finish(status="cancelled", code=None, message="done")


def test_claim_next_serves_tenants_in_turn(env: str) -> None:
    """One worker, one job at a time: a tenant's burst does not hold another's jobs behind it
    (the old claim took jobs in the order of their messages: a, a, a, a, b, b)."""
    from worker.job_store import claim_next

    a = make_jobs(4, tenant_name="a")
    b = make_jobs(2, tenant_name="b")
    order = []
    while (won := claim_next(lease_seconds=60)) is not None:
        order.append(won.job_id)
        _done(won)
    assert order == [a[0], b[0], a[1], b[1], a[2], a[3]]


def test_claim_next_prefers_the_tenant_with_the_fewest_running_jobs(env: str) -> None:
    from worker.job_store import claim_next

    a = make_jobs(3, tenant_name="a")
    b = make_jobs(2, tenant_name="b")
    held = [claim_next(lease_seconds=60) for _ in range(3)]
    assert [w.job_id for w in held if w is not None] == [a[0], b[0], a[1]]
    _done(held[1])  # b has none running now, a has two: b's next job goes first
    nxt = claim_next(lease_seconds=60)
    assert nxt is not None and nxt.job_id == b[1]
    nxt = claim_next(lease_seconds=60)
    assert nxt is not None and nxt.job_id == a[2]
    assert claim_next(lease_seconds=60) is None


def _claim_until_empty(args: tuple[str, str]) -> list[str]:
    db_url, data_dir = args
    import os

    os.environ["TUNESERVE_DATABASE_URL"] = db_url
    os.environ["TUNESERVE_DATA_DIR"] = data_dir
    from worker.job_store import claim_next

    got = []
    while (won := claim_next(lease_seconds=60)) is not None:
        got.append(won.job_id)
    return got


def test_concurrent_fair_claims_take_each_job_exactly_once(env: str, tmp_path: Path) -> None:
    job_ids = make_jobs(20, tenant_name="a") + make_jobs(20, tenant_name="b")
    ctx = mp.get_context("spawn")
    with ctx.Pool(4) as pool:
        results = pool.map(_claim_until_empty, [(env, str(tmp_path / "data"))] * 4)
    claimed = [j for r in results for j in r]
    assert sorted(claimed) == sorted(job_ids)  # every job once, none twice, no lock errors


def _hold_next_message_and_die(broker: str) -> None:
    """A consumer that takes the next ``train`` message without acknowledging it (acks_late, as
    a worker does) and dies at once: kombu leaves the message in its ``unacked`` hash."""
    import os

    from kombu import Connection

    message = Connection(broker).default_channel.basic_get("train", no_ack=False)
    os._exit(0 if message is not None else 1)


def _queued_since(job_id: str, seconds: float) -> None:
    from app.db import session_scope, utcnow
    from app.orm import Job

    with session_scope() as s:
        job = s.get(Job, job_id)
        assert job is not None
        job.enqueued_at = utcnow() - timedelta(seconds=seconds)


def test_reaper_resends_a_job_whose_message_died_with_its_worker(
    env: str, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The old reaper counted any message in ``unacked`` as present: a job whose message a
    dead worker held stayed queued until the 6-hour visibility timeout."""
    from app.tasks import TRAIN_TASK, send_task
    from worker.maintenance import reap_once

    (job_id,) = make_jobs(1)
    send_task(TRAIN_TASK, [job_id])
    broker = f"{redis_url}/{REDIS_DB}"
    holder = mp.get_context("spawn").Process(target=_hold_next_message_and_die, args=(broker,))
    holder.start()
    holder.join(30)
    assert holder.exitcode == 0
    r = redis.Redis.from_url(broker)
    assert r.llen("train") == 0 and r.hlen("unacked") == 1
    # delivered less than resend_after_s ago: on its way to a worker, not sent again
    monkeypatch.setenv("TUNESERVE_RESEND_AFTER_S", "30")
    reset_caches()
    _queued_since(job_id, 60)
    assert reap_once().resent == []
    # delivered longer ago than that and the job is still queued: nobody is starting it
    monkeypatch.setenv("TUNESERVE_RESEND_AFTER_S", "0")
    reset_caches()
    assert reap_once().resent == [job_id]
    assert r.llen("train") == 1
    assert reap_once().resent == []  # the new message waits in the queue: once is enough
