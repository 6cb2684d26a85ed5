"""Every job transition of ``app.jobs.lifecycle`` on SQLite and PostgreSQL, without a worker:
each one changes the row (and writes its event) from the states it starts from, and from any
other state changes nothing and writes no event."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.db import db_now, new_id, session_scope, utcnow
from app.jobs import lifecycle
from app.jobs.lifecycle import Claim
from app.orm import Job, JobEvent, Model
from tests.conftest import configure, reset_caches, truncate_all
from tests.integration.test_leases import make_jobs

REDIS_DB = 6
OURS, THEIRS = "ours" * 8, "theirs" * 5

#: the states a job is put in before a transition is tried on it; the lease tried is OURS
STATES = (
    "queued",
    "running",  # held by OURS, lease live
    "expired",  # held by OURS, lease expired, not reaped yet
    "stolen",  # running, but held by THEIRS: OURS is a stale lease
    "cancel_requested",  # held by OURS, cancel requested
    "succeeded",
    "failed",
    "cancelled",
)
HELD = frozenset({"running", "expired", "cancel_requested"})


@pytest.fixture(params=["sqlite", "postgres"])
def env(
    request: pytest.FixtureRequest, redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    db_url = str(request.getfixturevalue(f"{request.param}_url"))
    broker = f"{redis_url}/{REDIS_DB}"
    configure(monkeypatch, db_url=db_url, data_dir=tmp_path / "data", broker_url=broker)
    redis.Redis.from_url(broker).flushdb()
    yield db_url
    reset_caches()
    truncate_all(db_url)
    redis.Redis.from_url(broker).flushdb()


def put(job_id: str, state: str) -> Claim:
    """Put the job in ``state``; the lease OURS (attempt 1) on it."""
    with session_scope() as s:
        job = s.get(Job, job_id)
        assert job is not None
        running = state in HELD or state == "stolen"
        job.status = "running" if running else state
        job.attempt = 0 if state == "queued" else 1
        job.max_attempts = 2
        job.lease_token = (THEIRS if state == "stolen" else OURS) if running else None
        ahead = -5 if state == "expired" else 60
        job.lease_expires_at = utcnow() + timedelta(seconds=ahead) if running else None
        job.cancel_requested = state in ("cancel_requested", "cancelled")
        job.finished_at = utcnow() if state in ("succeeded", "failed", "cancelled") else None
    return Claim(job_id=job_id, token=OURS, attempt=1)


def snapshot(job_id: str) -> dict[str, Any]:
    """The job's row, how many events it has, and whether a model points at it."""
    with session_scope() as s:
        job = s.get(Job, job_id)
        assert job is not None
        row = {c.key: getattr(job, c.key) for c in Job.__table__.columns}
        count = select(func.count()).select_from(JobEvent).where(JobEvent.job_id == job_id)
        row["events"] = s.scalar(count)
        row["models"] = s.scalar(select(func.count()).where(Model.job_id == job_id))
    return row


def last_event(job_id: str) -> tuple[str, str, dict[str, Any] | None]:
    with session_scope() as s:
        event = s.scalars(
            select(JobEvent).where(JobEvent.job_id == job_id).order_by(JobEvent.id.desc())
        ).first()
        assert event is not None
        return event.kind, event.message, event.data


def sent() -> set[str]:
    """The job ids with a ``train`` message in the broker."""
    from worker.maintenance import jobs_in_broker

    found = jobs_in_broker()
    assert found is not None
    return found


def model_for(job_id: str) -> Any:
    with session_scope() as s:
        job = s.get(Job, job_id)
        assert job is not None
        tenant_id = job.tenant_id
    return Model(
        id=new_id("mdl"),
        tenant_id=tenant_id,
        job_id=job_id,
        base_model="tiny",
        task="text-classification",
        strategy="full",
        labels=["a", "b"],
        metrics={"val_macro_f1": 0.5},
        storage_path=f"models/{job_id}",
        size_bytes=1,
    )


@dataclass(frozen=True)
class Case:
    """A transition, the states it starts from, and what each of those becomes."""

    run: Callable[[Session, Claim], Any]
    #: start state -> (status after, event kind or None for no event)
    makes: dict[str, tuple[str, str | None]]
    #: whether the job's train message is sent again (after commit)
    sends: bool = False
    #: columns the right start state sets, checked after it
    sets: dict[str, Any] = field(default_factory=dict)


def _held(status: str, kind: str | None) -> dict[str, tuple[str, str | None]]:
    return dict.fromkeys(HELD, (status, kind))


CASES: dict[str, Case] = {
    "claim": Case(
        lambda s, lease: lifecycle.claim(s, lease.job_id, lease_seconds=60, worker_id="w:1:2"),
        {"queued": ("running", "started")},
        sets={"attempt": 1, "worker_id": "w:1:2"},
    ),
    "claim_next": Case(
        lambda s, lease: lifecycle.claim_next(s, lease_seconds=60, worker_id="w:1:2"),
        {"queued": ("running", "started")},
        sets={"attempt": 1},
    ),
    "renew": Case(
        lambda s, lease: lifecycle.renew(s, lease, lease_seconds=3600), _held("running", None)
    ),
    "write": Case(
        lambda s, lease: lifecycle.write(s, lease, progress={"step": 3}),
        _held("running", None),
        sets={"progress": {"step": 3}},
    ),
    "release": Case(
        lambda s, lease: lifecycle.release(s, lease, message="bye", data={"x": 1}),
        _held("queued", "released"),
        sends=True,
        sets={"attempt": 0, "lease_token": None, "worker_id": None, "release_requested": False},
    ),
    "succeed": Case(
        lambda s, lease: lifecycle.succeed(
            s, lease, model=model_for(lease.job_id), metrics={"m": 1.0}, progress={"percent": 100}
        ),
        _held("succeeded", "succeeded"),
        sets={"metrics": {"m": 1.0}, "lease_token": None, "models": 1},
    ),
    "fail": Case(
        lambda s, lease: lifecycle.finish(
            s, lease, status="failed", code="boom", message="it broke"
        ),
        _held("failed", "failed"),
        sets={"error_code": "boom", "error_message": "it broke", "lease_token": None},
    ),
    "finish_cancelled": Case(
        lambda s, lease: lifecycle.finish(
            s, lease, status="cancelled", code=None, message="stopped"
        ),
        _held("cancelled", "cancelled"),
        sets={"error_code": None, "error_message": None, "lease_token": None},
    ),
    "cancel": Case(
        lambda s, lease: lifecycle.cancel(s, lease.job_id),
        {
            "queued": ("cancelled", "cancelled"),
            "running": ("running", "cancel_requested"),
            "expired": ("running", "cancel_requested"),
            "stolen": ("running", "cancel_requested"),
        },
        sets={"cancel_requested": True},
    ),
    "requeue_or_fail_expired": Case(
        lambda s, lease: lifecycle.requeue_or_fail_expired(s, lease, max_attempts=2, now=db_now(s)),
        {"expired": ("queued", "requeued")},
        sends=True,
        sets={"lease_token": None, "attempt": 1},
    ),
    "resend": Case(
        lambda s, lease: lifecycle.resend(s, lease.job_id, now=db_now(s)),
        {"queued": ("queued", None)},
        sends=True,
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_each_transition_applies_only_from_its_start_states(env: str, name: str) -> None:
    case = CASES[name]
    jobs = dict(zip(STATES, make_jobs(len(STATES)), strict=True))
    leases = {state: put(job_id, state) for state, job_id in jobs.items()}
    for state in STATES:  # one job is queued: claim_next takes that one or none
        job_id = jobs[state]
        before = snapshot(job_id)
        with session_scope() as s:
            result = case.run(s, leases[state])
        after = snapshot(job_id)
        if state not in case.makes:
            assert not result, (name, state)
            assert after == before, (name, state)  # no change, no event
            assert job_id not in sent(), (name, state)
            continue
        status, kind = case.makes[state]
        assert result, (name, state)
        assert after["status"] == status, (name, state)
        assert after["events"] == before["events"] + (kind is not None), (name, state)
        if kind is not None:
            assert last_event(job_id)[0] == kind
        for column, value in case.sets.items():
            assert after[column] == value, (name, state, column)
        assert (job_id in sent()) == case.sends, (name, state)


def test_claim_and_renew_set_the_lease_by_the_database_clock(env: str) -> None:
    (job_id,) = make_jobs(1)
    with session_scope() as s:
        won = lifecycle.claim(s, job_id, lease_seconds=60, worker_id="w:1:2")
    assert won is not None and won.attempt == 1
    first = snapshot(job_id)
    assert first["lease_token"] == won.token and first["started_at"] is not None
    assert 55 < (first["lease_expires_at"] - first["started_at"]).total_seconds() <= 60
    assert last_event(job_id) == (
        "started",
        "Attempt 1 started.",
        {"attempt": 1, "worker": "w:1:2"},
    )
    with session_scope() as s:
        assert lifecycle.renew(s, won, lease_seconds=3600)
    assert snapshot(job_id)["lease_expires_at"] > first["lease_expires_at"] + timedelta(hours=0.9)
    with session_scope() as s:  # a second claim of the same job: nobody gets it twice
        assert lifecycle.claim(s, job_id, lease_seconds=60, worker_id="w:1:3") is None
    assert snapshot(job_id)["events"] == first["events"]


def test_a_stale_lease_holder_can_no_longer_write_once_the_job_was_reaped(env: str) -> None:
    """Lost worker A's lease expires; the reaper requeues the job and worker B claims it. A
    comes back: it can neither renew, write, succeed, fail nor release; B still can."""
    (job_id,) = make_jobs(1)
    with session_scope() as s:
        a = lifecycle.claim(s, job_id, lease_seconds=60, worker_id="a:1:2")
    assert a is not None
    put(job_id, "expired")
    a = Claim(job_id=job_id, token=OURS, attempt=1)
    with session_scope() as s:
        outcome = lifecycle.requeue_or_fail_expired(s, a, max_attempts=2, now=db_now(s))
    assert outcome == "requeued"
    assert last_event(job_id) == (
        "requeued",
        "The worker was lost (lease expired) during attempt 1; the job is queued again and "
        "resumes from its last checkpoint.",
        {"attempt": 1, "reason": "worker_lost"},
    )
    with session_scope() as s:
        b = lifecycle.claim(s, job_id, lease_seconds=60, worker_id="b:1:2")
    assert b is not None and b.attempt == 2
    held = snapshot(job_id)
    model = model_for(job_id)
    with session_scope() as s:
        assert not lifecycle.renew(s, a, lease_seconds=60)
        assert not lifecycle.write(s, a, progress={"step": 99})
        assert not lifecycle.succeed(s, a, model=model, metrics={}, progress={"percent": 100})
        assert not lifecycle.finish(s, a, status="failed", code="x", message="late")
        assert not lifecycle.release(s, a, message="late")
        assert lifecycle.requeue_or_fail_expired(s, a, max_attempts=2, now=db_now(s)) is None
    assert snapshot(job_id) == held
    with session_scope() as s:
        assert lifecycle.succeed(s, b, model=model, metrics={}, progress={})
    after = snapshot(job_id)
    assert (after["status"], after["model_id"], after["models"]) == ("succeeded", model.id, 1)
    assert last_event(job_id) == (
        "succeeded",
        f"Model {model.id} registered.",
        {"model_id": model.id, "metrics": {}},
    )


def test_an_expired_lease_on_the_last_attempt_fails_the_job(env: str) -> None:
    (job_id,) = make_jobs(1)
    lease = put(job_id, "expired")
    with session_scope() as s:
        outcome = lifecycle.requeue_or_fail_expired(s, lease, max_attempts=1, now=db_now(s))
    assert outcome == "failed"
    row = snapshot(job_id)
    assert (row["status"], row["error_code"], row["lease_token"]) == ("failed", "worker_lost", None)
    assert row["finished_at"] is not None
    message = (
        "The worker running this job was lost 1 times (max_attempts=1); it may be killing its "
        "worker (for example by running out of memory: try a smaller batch_size or max_length)."
    )
    assert row["error_message"] == message
    assert last_event(job_id) == ("failed", message, {"attempt": 1, "reason": "worker_lost"})
    assert job_id not in sent()
    with session_scope() as s:  # a second reaper pass: nothing twice
        assert lifecycle.requeue_or_fail_expired(s, lease, max_attempts=1, now=db_now(s)) is None
    assert snapshot(job_id) == row


def test_cancel_of_a_finished_job_is_refused(env: str) -> None:
    for state in ("succeeded", "failed", "cancelled"):
        (job_id,) = make_jobs(1, tenant_name=state)
        put(job_id, state)
        before = snapshot(job_id)
        with session_scope() as s:
            assert lifecycle.cancel(s, job_id) is None
        assert snapshot(job_id) == before


def test_nothing_is_sent_when_the_transaction_rolls_back(env: str) -> None:
    (job_id,) = make_jobs(1)
    lease = put(job_id, "running")
    before = snapshot(job_id)
    with pytest.raises(RuntimeError), session_scope() as s:
        assert lifecycle.release(s, lease, message="bye")
        raise RuntimeError("the caller fails before its commit")
    assert snapshot(job_id) == before
    assert job_id not in sent()
    with session_scope() as s:
        assert lifecycle.release(s, lease, message="bye")
    assert sent() == {job_id}
    assert last_event(job_id) == ("released", "bye", None)
