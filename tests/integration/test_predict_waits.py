"""A waiting prediction holds no thread and no database connection: 256 predicts that wait
for a worker leave the rest of the API answering at once (a real uvicorn process)."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from tests.api.test_auth_tenants import insert_model
from tests.conftest import configure, truncate_all
from tests.integration.conftest import ApiProcess

pytestmark = pytest.mark.integration

REDIS_DB = 11
CONCURRENT = 256
TIMEOUT_S = 8.0


@pytest.fixture
def api(
    postgres_url: str, redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[str, dict[str, str], str]]:
    """(base URL, auth headers, a model id) of a real API process with no inference worker."""
    from app.db import session_scope
    from app.tenants.service import create_key

    broker = f"{redis_url}/{REDIS_DB}"
    redis.Redis.from_url(broker).flushdb()
    configure(monkeypatch, db_url=postgres_url, data_dir=tmp_path, broker_url=broker)
    with session_scope() as s:
        _, key = create_key(s, tenant_name="waiting")
    model_id = insert_model("waiting")
    env = {
        **os.environ,
        "TUNESERVE_DATABASE_URL": postgres_url,
        "TUNESERVE_BROKER_URL": broker,
        "TUNESERVE_DATA_DIR": str(tmp_path),
        "TUNESERVE_PREDICT_TIMEOUT_S": str(TIMEOUT_S),
    }
    api = ApiProcess(env, tmp_path / "api.log", access_log=False)
    try:
        yield api.url, {"Authorization": f"Bearer {key}"}, model_id
    finally:
        api.stop()
        truncate_all(postgres_url)
        redis.Redis.from_url(broker).flushdb()


def test_waiting_predicts_do_not_slow_the_api(api: tuple[str, dict[str, str], str]) -> None:
    from app.db import session_scope
    from app.inference.protocol import TENANTS_KEY, queue_key
    from app.models.orm import Model

    url, headers, model_id = api
    with session_scope() as s:
        model = s.get(Model, model_id)
        assert model is not None
        tenant_id, job_id = model.tenant_id, model.job_id
    queue = redis.Redis.from_url(f"{os.environ['TUNESERVE_BROKER_URL']}")

    async def scenario() -> tuple[list[float], list[int]]:
        limits = httpx.Limits(max_connections=CONCURRENT + 8, max_keepalive_connections=0)
        async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits) as client:
            predicts = [
                asyncio.create_task(
                    client.post(
                        f"/v1/models/{model_id}/predict",
                        json={"inputs": [f"text {i}"]},
                        timeout=TIMEOUT_S + 30,
                    )
                )
                for i in range(CONCURRENT)
            ]
            deadline = time.monotonic() + TIMEOUT_S - 2
            while queue.llen(queue_key(tenant_id)) < CONCURRENT:  # every one is waiting now
                assert time.monotonic() < deadline, queue.llen(queue_key(tenant_id))
                await asyncio.sleep(0.05)
            latencies = []
            for _ in range(10):
                started = time.perf_counter()
                r = await client.get(f"/v1/jobs/{job_id}", timeout=10)
                latencies.append(time.perf_counter() - started)
                assert r.status_code == 200, r.text
            assert not any(task.done() for task in predicts)  # still all waiting
            statuses = [r.status_code for r in await asyncio.gather(*predicts)]
        return latencies, statuses

    latencies, statuses = asyncio.run(scenario())
    print(f"GET /v1/jobs/{{id}} while {CONCURRENT} predicts wait: max {max(latencies):.3f}s")
    assert max(latencies) < 0.5
    assert statuses == [504] * CONCURRENT
    assert queue.llen(queue_key(tenant_id)) == 0  # each took its request back at its deadline
    assert queue.sismember(TENANTS_KEY, tenant_id)
