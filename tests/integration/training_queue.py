"""A deployment for training-queue tests: PostgreSQL, Redis, the real app, tenants with keys
and a dataset each, and real training workers started as production starts them
(``-Q train -c 1 --max-tasks-per-child 1``)."""

from __future__ import annotations

import contextlib
import csv
import io
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient

from tests.conftest import reset_caches, truncate_all
from tests.integration.conftest import ROOT, WorkerProcess
from worker.testing import build_tiny_bert, learnable_examples

TERMINAL = {"succeeded", "failed", "cancelled"}
#: the cheapest real job: a head on a tiny random encoder, one epoch
TINY_JOB = {
    "base_model": "tiny-bert",
    "strategy": {"name": "linear_probe"},
    "hyperparameters": {"epochs": 1, "batch_size": 8, "max_length": 16, "seed": 0},
}


@dataclass
class Deployment:
    client: TestClient
    headers: dict[str, dict[str, str]]
    datasets: dict[str, str]
    env: dict[str, str]
    root: Path
    broker: redis.Redis
    workers: list[WorkerProcess] = field(default_factory=list)

    def worker(
        self,
        *,
        queues: str = "train",
        concurrency: int = 1,
        beat: bool = False,
        start: bool = True,
    ) -> WorkerProcess:
        """A training worker with production's flags (its own process group)."""
        log_dir = self.root / f"worker-{len(self.workers)}"
        log_dir.mkdir()
        worker = WorkerProcess(
            self.env,
            log_dir,
            queues=queues,
            concurrency=concurrency,
            beat=beat,
            extra=("--max-tasks-per-child", "1"),
        )
        self.workers.append(worker)
        if start:
            worker.start()
        return worker

    def submit(self, tenant: str) -> str:
        body = {**TINY_JOB, "dataset_id": self.datasets[tenant]}
        r = self.client.post("/v1/jobs", headers=self.headers[tenant], json=body)
        assert r.status_code == 201, r.text
        return str(r.json()["id"])

    def cancel(self, tenant: str, job_id: str) -> None:
        r = self.client.post(f"/v1/jobs/{job_id}/cancel", headers=self.headers[tenant])
        assert r.status_code in (200, 202), r.text

    def job(self, tenant: str, job_id: str) -> dict[str, Any]:
        r = self.client.get(f"/v1/jobs/{job_id}", headers=self.headers[tenant])
        assert r.status_code == 200, r.text
        return dict(r.json())

    def events(self, tenant: str, job_id: str) -> list[str]:
        r = self.client.get(
            f"/v1/jobs/{job_id}/events", headers=self.headers[tenant], params={"limit": 500}
        )
        return [e["kind"] for e in r.json()["data"]]

    def wait(
        self, tenant: str, job_ids: list[str], timeout: float, until: set[str] = TERMINAL
    ) -> dict[str, dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            jobs = {j: self.job(tenant, j) for j in job_ids}
            if all(j["status"] in until for j in jobs.values()):
                return jobs
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"not {until} after {timeout}s: "
                    f"{ {k: v['status'] for k, v in jobs.items()} }\n{self.logs()}"
                )
            time.sleep(0.2)

    def train_messages(self) -> int:
        """``train`` messages waiting in Redis plus those delivered and not acknowledged."""
        return int(self.broker.llen("train")) + int(self.broker.hlen("unacked"))

    def logs(self, chars: int = 4000) -> str:
        return "".join(w.tail(chars) for w in self.workers)[-chars:]

    def stop_workers(self) -> None:
        for worker in self.workers:
            worker.stop()


def _csv(n_per_class: int) -> bytes:
    texts, labels = learnable_examples(n_per_class, seed=0)
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["text", "label"])
    writer.writerows(zip(texts, labels, strict=True))
    return buf.getvalue().encode()


@contextlib.contextmanager
def deployment(
    postgres_url: str,
    redis_url: str,
    root: Path,
    *,
    redis_db: int,
    tenants: tuple[str, ...],
    **settings: str,
) -> Iterator[Deployment]:
    """The app over PostgreSQL and Redis database ``redis_db``; ``settings`` are
    ``TUNESERVE_*`` values (``reaper_interval_s="1"``) for the app and every worker."""
    build_tiny_bert(root / "base-models" / "tiny-bert")
    broker_url = f"{redis_url}/{redis_db}"
    broker = redis.Redis.from_url(broker_url)
    broker.flushdb()
    values = {
        "TUNESERVE_DATABASE_URL": postgres_url,
        "TUNESERVE_BROKER_URL": broker_url,
        "TUNESERVE_DATA_DIR": str(root / "data"),
        "TUNESERVE_BASE_MODELS_DIR": str(root / "base-models"),
        "TUNESERVE_PROGRESS_WRITE_INTERVAL_S": "0.5",
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        **{f"TUNESERVE_{k.upper()}": v for k, v in settings.items()},
    }
    env = {**os.environ, **values, "PYTHONPATH": str(ROOT)}
    mp = pytest.MonkeyPatch()
    for key, value in values.items():
        mp.setenv(key, value)
    reset_caches()
    d: Deployment | None = None
    try:
        from app.db import session_scope
        from app.main import create_app
        from app.tenants.service import create_key

        headers = {}
        for tenant in tenants:
            with session_scope() as s:
                _, key = create_key(s, tenant_name=tenant)
            headers[tenant] = {"Authorization": f"Bearer {key}"}
        with TestClient(create_app(), raise_server_exceptions=False) as client:
            datasets = {}
            for tenant in tenants:
                r = client.post(
                    "/v1/datasets",
                    headers=headers[tenant],
                    files={"file": ("d.csv", _csv(10), "text/csv")},
                )
                assert r.status_code == 201, r.text
                datasets[tenant] = str(r.json()["id"])
            d = Deployment(client, headers, datasets, env, root, broker)
            yield d
    finally:
        if d is not None:
            d.stop_workers()
        reset_caches()
        truncate_all(postgres_url)
        broker.flushdb()
        mp.undo()
