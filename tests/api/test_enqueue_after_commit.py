"""A task is sent when its row is committed: not at a savepoint's release inside the
transaction (SQLAlchemy dispatches ``after_commit`` for those too), never after a rollback.

Every sweep candidate's idempotency insert releases a savepoint: before this, the first
candidate's train message went out before the sweep was committed, a worker found no queued
job, acknowledged it, and that candidate waited for the reaper (a sweep stuck "running")."""

from __future__ import annotations

from pathlib import Path

import redis
from fastapi.testclient import TestClient
from sqlalchemy import text

from app.tasks import TRAIN_QUEUE, TRAIN_TASK, enqueue_after_commit
from tests.api.conftest import csv_bytes, sample_rows, upload


def _waiting(broker: redis.Redis) -> int:
    return int(broker.llen(TRAIN_QUEUE))


def test_a_savepoint_sends_nothing_the_commit_sends_all(api_env: Path, broker: redis.Redis) -> None:
    from app.db import get_sessionmaker

    with get_sessionmaker()() as session:
        session.execute(text("select 1"))
        enqueue_after_commit(session, TRAIN_TASK, ["job_a"])
        with session.begin_nested():
            session.execute(text("select 1"))
        assert _waiting(broker) == 0  # the savepoint's release sent nothing
        try:
            with session.begin_nested():
                raise RuntimeError("a losing idempotency race")
        except RuntimeError:
            pass
        enqueue_after_commit(session, TRAIN_TASK, ["job_b"])
        assert _waiting(broker) == 0
        session.commit()
        assert _waiting(broker) == 2  # a savepoint's rollback dropped nothing either

        session.execute(text("select 1"))
        enqueue_after_commit(session, TRAIN_TASK, ["job_c"])
        session.rollback()
        session.commit()
        assert _waiting(broker) == 2  # the rolled back one is never sent


def test_a_sweep_sends_each_candidate_once_after_its_commit(
    client: TestClient, auth: dict[str, str], broker: redis.Redis
) -> None:
    ds = upload(client, auth, csv_bytes(sample_rows()))
    assert ds.status_code == 201, ds.text
    body = {
        "base_model": "all-MiniLM-L6-v2",
        "dataset_id": ds.json()["id"],
        "strategies": [{"name": "linear_probe"}, {"name": "full"}, {"name": "lora"}],
    }
    r = client.post("/v1/sweeps", headers=auth, json=body)
    assert r.status_code == 201, r.text
    assert _waiting(broker) == 3
