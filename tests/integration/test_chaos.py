"""Jobs survive crashes: workers are SIGKILLed at seeded random points, SIGTERMed, poisoned;
Redis restarts with jobs queued. Every job ends on its own; resumed jobs match clean runs."""

from __future__ import annotations

import contextlib
import csv
import io
import os
import random
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient

from tests.conftest import reset_caches, truncate_all
from tests.integration.conftest import ROOT, WorkerProcess
from worker.testing import learnable_examples

pytestmark = pytest.mark.integration

TERMINAL = {"succeeded", "failed", "cancelled"}
HP = {
    "epochs": 12,
    "batch_size": 4,
    "max_length": 32,
    "seed": 0,
    "learning_rate": 1e-3,
    "validation_fraction": 0.25,
    # every job runs all its epochs, so kills land mid-training; the best evaluation is still
    # selected (and must survive the kills: its weights are kept beside the checkpoints)
    "early_stopping": {"enabled": False},
}
#: a resumed job replays the same batches with the same RNG state: its final validation loss
#: matches an uninterrupted run to float rounding (documented in docs/operations.md)
RESUME_TOLERANCE = 1e-4


@dataclass
class Chaos:
    client: TestClient
    headers: dict[str, str]
    worker: WorkerProcess
    data_dir: Path
    env: dict[str, str]

    def submit(self, dataset_id: str, **hp: Any) -> str:
        body = {
            "base_model": "tiny-bert",
            "dataset_id": dataset_id,
            "strategy": {"name": "full"},
            "hyperparameters": {**HP, **hp},
        }
        r = self.client.post("/v1/jobs", headers=self.headers, json=body)
        assert r.status_code == 201, r.text
        return str(r.json()["id"])

    def job(self, job_id: str) -> dict[str, Any]:
        return dict(self.client.get(f"/v1/jobs/{job_id}", headers=self.headers).json())

    def events(self, job_id: str) -> list[str]:
        r = self.client.get(
            f"/v1/jobs/{job_id}/events", headers=self.headers, params={"limit": 500}
        )
        return [e["kind"] for e in r.json()["data"]]

    def wait(self, job_ids: list[str], timeout: float) -> dict[str, dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            jobs = {j: self.job(j) for j in job_ids}
            if all(j["status"] in TERMINAL for j in jobs.values()):
                return jobs
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"not finished after {timeout}s: "
                    f"{ {k: (v['status'], v['attempt']) for k, v in jobs.items()} }\n"
                    f"{self.worker.tail()}"
                )
            time.sleep(0.5)

    def wait_running(self, job_id: str, min_step: int = 1, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.job(job_id)
            if job["status"] == "running" and job["progress"].get("step", 0) >= min_step:
                return
            time.sleep(0.1)
        raise AssertionError(f"{job_id} never ran: {self.job(job_id)}\n{self.worker.tail()}")

    def ensure_worker(self) -> None:
        if self.worker.proc is None or self.worker.proc.poll() is not None:
            self.worker.stop()
            self.worker.start()


def _csv(n_per_class: int, seed: int) -> bytes:
    texts, labels = learnable_examples(n_per_class, seed)
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["text", "label"])
    writer.writerows(zip(texts, labels, strict=True))
    return buf.getvalue().encode()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def chaos(
    postgres_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Chaos]:
    from worker.testing import build_tiny_bert

    root = tmp_path_factory.mktemp("chaos")
    build_tiny_bert(root / "base-models" / "tiny-bert")
    broker = f"{redis_url}/10"
    redis.Redis.from_url(broker).flushdb()
    values = {
        "TUNESERVE_DATABASE_URL": postgres_url,
        "TUNESERVE_BROKER_URL": broker,
        "TUNESERVE_DATA_DIR": str(root / "data"),
        "TUNESERVE_BASE_MODELS_DIR": str(root / "base-models"),
        "TUNESERVE_PROGRESS_WRITE_INTERVAL_S": "0.3",
        "TUNESERVE_LEASE_SECONDS": "4",
        "TUNESERVE_REAPER_INTERVAL_S": "1",
        "TUNESERVE_RESEND_AFTER_S": "3",
        "TUNESERVE_CHECKPOINT_EVERY_STEPS": "5",
        # more attempts than the sigkill test's 5 kills: no job can run out of attempts, so
        # the job that was past its checkpoint when killed always resumes (a job that ran out
        # of attempts proved nothing, and which one did depended on timing)
        "TUNESERVE_MAX_ATTEMPTS": "6",
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    env = {**os.environ, **values, "PYTHONPATH": str(ROOT)}
    mp = pytest.MonkeyPatch()
    for key, value in values.items():
        mp.setenv(key, value)
    reset_caches()
    worker = WorkerProcess(env, root, queues="train,maintenance", concurrency=2, beat=True)
    try:
        worker.start()
        from app.db import session_scope
        from app.main import create_app
        from app.tenants.service import create_key

        with session_scope() as s:
            _, key = create_key(s, tenant_name="chaos")
        with TestClient(create_app(), raise_server_exceptions=False) as client:
            yield Chaos(client, {"Authorization": f"Bearer {key}"}, worker, root / "data", env)
    finally:
        worker.stop()
        reset_caches()
        truncate_all(postgres_url)
        redis.Redis.from_url(broker).flushdb()
        mp.undo()


@pytest.fixture(scope="module")
def dataset_id(chaos: Chaos) -> str:
    r = chaos.client.post(
        "/v1/datasets",
        headers=chaos.headers,
        files={"file": ("d.csv", _csv(40, seed=5), "text/csv")},
    )
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


@pytest.fixture(scope="module")
def clean_run(chaos: Chaos, dataset_id: str) -> dict[str, Any]:
    """The same job, never interrupted: what resumed jobs must match."""
    job_id = chaos.submit(dataset_id)
    done = chaos.wait([job_id], timeout=180)[job_id]
    assert done["status"] == "succeeded", chaos.worker.tail()
    return done


def _wait_any_progress(chaos: Chaos, job_ids: list[str], min_step: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        jobs = [chaos.job(j) for j in job_ids]
        if all(j["status"] in TERMINAL for j in jobs) or any(
            j["status"] == "running" and (j["progress"].get("step") or 0) >= min_step for j in jobs
        ):
            return
        time.sleep(0.1)


def _holder_pid(job_id: str) -> int | None:
    """The pool process holding the job's lease (``worker_id`` is host:main-pid:pid)."""
    from app.db import session_scope
    from app.orm import Job

    with session_scope() as s:
        job = s.get(Job, job_id)
        if job is None or job.status != "running" or not job.worker_id:
            return None
        return int(job.worker_id.rsplit(":", 1)[1])


def _no_partial_artifacts(data_dir: Path) -> None:
    models = data_dir / "models"
    if models.exists():
        assert not [p.name for p in models.iterdir() if p.name.startswith(".")]
        for model in models.iterdir():
            assert (model / "manifest.json").is_file()


def test_sigkill_at_seeded_random_points(
    chaos: Chaos, dataset_id: str, clean_run: dict[str, Any]
) -> None:
    rng = random.Random(20261128)
    job_ids = [chaos.submit(dataset_id) for _ in range(4)]
    kills: list[str] = []
    for _ in range(5):
        # a seeded random moment once some job is past a checkpoint (every 5 steps)
        time.sleep(rng.uniform(0.5, 2.5))
        _wait_any_progress(chaos, job_ids, min_step=6)
        if rng.random() < 0.65:
            # the pool processes training a job die (an OOM kill); the worker's main process
            # and its embedded beat live on and fork new pool processes
            holders = [pid for j in job_ids if (pid := _holder_pid(j)) is not None]
            for pid in holders:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            if holders:
                kills.append("pool-process")
        else:
            chaos.worker.kill_all()
            kills.append("whole-worker")
            time.sleep(rng.uniform(0.0, 2.0))
            chaos.ensure_worker()
    chaos.ensure_worker()
    jobs = chaos.wait(job_ids, timeout=300)
    outcome = {j: (v["status"], v["attempt"]) for j, v in jobs.items()}
    print(f"\nchaos: {len(kills)} kills {kills}; outcomes {outcome}")
    for job in jobs.values():
        assert job["status"] == "succeeded", (job, chaos.worker.tail()[-4000:])
        assert job["attempt"] <= job["max_attempts"]
    resumed = [
        j for j, v in jobs.items() if v["status"] == "succeeded" and "resumed" in chaos.events(j)
    ]
    assert resumed, f"no job resumed from a checkpoint: {outcome}"
    for job_id in resumed:
        job = jobs[job_id]
        assert abs(job["metrics"]["val_loss"] - clean_run["metrics"]["val_loss"]) <= (
            RESUME_TOLERANCE
        ), (job["metrics"], clean_run["metrics"])
        assert job["metrics"]["val_accuracy"] == clean_run["metrics"]["val_accuracy"]
    _no_partial_artifacts(chaos.data_dir)
    leftovers = chaos.data_dir / "checkpoints"
    assert not leftovers.exists() or not any(leftovers.iterdir())


def test_sigterm_releases_the_job_and_a_new_worker_resumes_it(
    chaos: Chaos, dataset_id: str, clean_run: dict[str, Any]
) -> None:
    chaos.ensure_worker()
    job_id = chaos.submit(dataset_id)
    chaos.wait_running(job_id, min_step=12)
    started = time.monotonic()
    assert chaos.worker.terminate(timeout=60) == 0
    assert time.monotonic() - started < 30  # it did not wait for the job to finish
    job = chaos.job(job_id)
    assert job["status"] == "queued" and job["attempt"] == 0, job
    assert "released" in chaos.events(job_id)
    chaos.worker.start()
    done = chaos.wait([job_id], timeout=180)[job_id]
    assert done["status"] == "succeeded" and done["attempt"] == 1
    assert "resumed" in chaos.events(job_id)
    assert abs(done["metrics"]["val_loss"] - clean_run["metrics"]["val_loss"]) <= (RESUME_TOLERANCE)


def _reaper_runs(chaos: Chaos) -> list[str]:
    """The running worker's log lines of finished reaper passes, oldest first."""
    lines = chaos.worker.log.read_text(errors="replace").splitlines()
    return [line for line in lines if "Task tuneserve.reap[" in line and "succeeded in" in line]


def test_poison_job_fails_after_max_attempts_and_the_queue_drains(
    chaos: Chaos, dataset_id: str
) -> None:
    chaos.ensure_worker()
    poison = chaos.submit(dataset_id, epochs=40)
    healthy = chaos.submit(dataset_id, epochs=2)
    kills, killed_attempt = 0, 0
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        job = chaos.job(poison)
        if job["status"] in TERMINAL:
            break
        pid = _holder_pid(poison)
        if job["status"] == "running" and job["attempt"] > killed_attempt and pid is not None:
            os.kill(pid, signal.SIGKILL)  # like the OOM killer, every time it runs
            kills, killed_attempt = kills + 1, job["attempt"]
        time.sleep(0.05)
    jobs = chaos.wait([poison, healthy], timeout=120)
    assert jobs[poison]["status"] == "failed", jobs[poison]
    assert jobs[poison]["error"]["code"] == "worker_lost"
    assert jobs[poison]["attempt"] == jobs[poison]["max_attempts"] == kills
    assert jobs[healthy]["status"] == "succeeded"
    # nothing loops: every train message (the kills put the poison job's back on the queue)
    # was taken off the queue ... (a SIGKILLed child's message may stay in kombu's unacked
    # hash until its visibility timeout: it names a finished job, so nothing resends it)
    broker = redis.Redis.from_url(chaos.env["TUNESERVE_BROKER_URL"])
    deadline = time.monotonic() + 60
    while broker.llen("train") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert broker.llen("train") == 0, chaos.worker.tail()
    # ... and it stays so through two whole reaper passes that began after that, which
    # resent and requeued nothing
    before = len(_reaper_runs(chaos))
    deadline = time.monotonic() + 30
    while len(_reaper_runs(chaos)) < before + 3 and time.monotonic() < deadline:
        time.sleep(0.2)
    later = _reaper_runs(chaos)[before + 1 :]
    assert len(later) >= 2, chaos.worker.tail()
    assert all("'requeued': [], 'failed': [], 'resent': []" in line for line in later), later
    assert broker.llen("train") == 0


def test_redis_restart_with_jobs_queued(chaos: Chaos, dataset_id: str, tmp_path: Path) -> None:
    """A broker without persistence restarts while jobs wait: the reaper sends them again."""
    from app.embedded import redis_server_binary

    chaos.worker.stop()
    port = _free_port()
    cmd = [
        redis_server_binary(),
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(tmp_path),
    ]
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    mp = pytest.MonkeyPatch()
    try:
        for _ in range(50):
            try:
                if redis.Redis.from_url(url).ping():
                    break
            except redis.ConnectionError:
                time.sleep(0.1)
        mp.setenv("TUNESERVE_BROKER_URL", url)
        reset_caches()
        job_ids = [chaos.submit(dataset_id, epochs=2) for _ in range(3)]
        assert redis.Redis.from_url(url).llen("train") == 3
        server.terminate()
        server.wait()
        # while Redis is down: reads still work, submitting answers 503
        assert chaos.job(job_ids[0])["status"] == "queued"
        r = chaos.client.post(
            "/v1/jobs",
            headers=chaos.headers,
            json={
                "base_model": "tiny-bert",
                "dataset_id": dataset_id,
                "strategy": {"name": "full"},
            },
        )
        assert r.status_code == 503 and r.json()["error"]["code"] == "queue_unavailable"
        server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.5)
        assert redis.Redis.from_url(url).llen("train") == 0  # the messages are gone
        worker = WorkerProcess(
            {**chaos.env, "TUNESERVE_BROKER_URL": url},
            tmp_path,
            queues="train,maintenance",
            concurrency=2,
            beat=True,
        )
        worker.start()
        try:
            jobs = chaos.wait(job_ids, timeout=180)
            assert {j["status"] for j in jobs.values()} == {"succeeded"}
            # and the API recovered by itself
            r = chaos.client.post(
                "/v1/jobs",
                headers=chaos.headers,
                json={
                    "base_model": "tiny-bert",
                    "dataset_id": dataset_id,
                    "strategy": {"name": "full"},
                    "hyperparameters": {"epochs": 1},
                },
            )
            assert r.status_code == 201
            chaos.wait([r.json()["id"]], timeout=120)
        finally:
            worker.stop()
    finally:
        server.terminate()
        server.wait()
        mp.undo()
        reset_caches()
        shutil.rmtree(tmp_path, ignore_errors=True)
