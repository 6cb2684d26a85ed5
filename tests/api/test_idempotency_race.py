"""Two submissions with one new Idempotency-Key, interleaved so that the other one commits
between this one's lookup and its insert: the loser answers with the winner's job (a replay),
never a 500, on SQLite (whose driver loses the savepoint with the transaction) and PostgreSQL."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import event
from sqlalchemy.orm import ORMExecuteState, Session

from tests.api.conftest import csv_bytes, sample_rows, upload
from tests.api.test_auth_tenants import JOB_BODY, SWEEP_BODY


def _commit_a_rival_first(session: Session, rival: Any, *, before: str) -> None:
    """After ``session`` has looked the key up (and found nothing) and before it writes,
    another session commits ``rival()``'s row with the same key: right ``before`` the tenant
    lock of a job's quota check (``"tenant_lock"``) or the first flush (``"flush"``), the
    last moments at which ``session`` holds no lock the rival would wait for."""

    def commit_rival() -> None:
        from app.db import session_scope

        with session_scope() as other:
            rival(other)

    if before == "flush":
        event.listen(session, "before_flush", lambda *_: commit_rival(), once=True)
        return
    done = False

    def before_execute(state: ORMExecuteState) -> None:
        nonlocal done
        if not done and "FROM tenants" in str(state.statement):
            done = True
            commit_rival()

    event.listen(session, "do_orm_execute", before_execute)


def test_a_job_submission_that_loses_the_race_replays_the_winner(
    client: TestClient, auth: dict[str, str]
) -> None:
    from app.config import get_settings
    from app.db import get_sessionmaker
    from app.jobs import service
    from app.jobs.schemas import JobCreate

    ds = upload(client, auth, csv_bytes(sample_rows())).json()
    body = JobCreate.model_validate({**JOB_BODY, "dataset_id": ds["id"]})
    tenant_id = client.get("/v1/usage", headers=auth).json()["tenant_id"]
    settings = get_settings()
    won: list[str] = []

    def rival(other: Session) -> None:
        job, created = service.create_job(
            other, tenant_id=tenant_id, body=body, settings=settings, idempotency_key="k-1"
        )
        assert created
        won.append(job.id)

    with get_sessionmaker()() as session:
        _commit_a_rival_first(session, rival, before="tenant_lock")
        job, created = service.create_job(
            session, tenant_id=tenant_id, body=body, settings=settings, idempotency_key="k-1"
        )
        session.commit()
    assert not created and job.id == won[0]
    jobs = client.get("/v1/jobs", headers=auth).json()["data"]
    assert [j["id"] for j in jobs] == won


def test_a_sweep_that_loses_the_race_replays_the_winner(
    client: TestClient, auth: dict[str, str]
) -> None:
    from app.config import get_settings
    from app.db import get_sessionmaker
    from app.sweeps import service
    from app.sweeps.schemas import SweepCreate

    ds = upload(client, auth, csv_bytes(sample_rows())).json()
    body = SweepCreate.model_validate({**SWEEP_BODY, "dataset_id": ds["id"]})
    tenant_id = client.get("/v1/usage", headers=auth).json()["tenant_id"]
    settings = get_settings()
    won: list[str] = []

    def rival(other: Session) -> None:
        sweep, created = service.create_sweep(
            other, tenant_id=tenant_id, body=body, settings=settings, idempotency_key="s-1"
        )
        assert created
        won.append(sweep.id)

    with get_sessionmaker()() as session:
        _commit_a_rival_first(session, rival, before="flush")
        sweep, created = service.create_sweep(
            session, tenant_id=tenant_id, body=body, settings=settings, idempotency_key="s-1"
        )
        session.commit()
    assert not created and sweep.id == won[0]
    assert len(client.get("/v1/sweeps", headers=auth).json()["data"]) == 1
    assert len(client.get("/v1/jobs", headers=auth).json()["data"]) == 2  # the winner's two
