"""A real stack: PostgreSQL, Redis, a real ``celery worker`` subprocess, the real app."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.conftest import reset_caches, truncate_all

INTEGRATION_REDIS_DB = 12
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Stack:
    client: TestClient
    headers: dict[str, str]
    data_dir: Path
    env: dict[str, str]
    worker_log: Path


def _start_worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "worker.celery_app",
            "worker",
            "-Q",
            "train,infer",
            "-c",
            "2",
            "-n",
            f"itest-{os.getpid()}@%h",
            "--loglevel",
            "INFO",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ],
        env=env,
        cwd=ROOT,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _wait_ready(proc: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"worker exited {proc.returncode}:\n{log.read_text()[-3000:]}")
        if " ready." in log.read_text(errors="replace"):
            return
        time.sleep(0.3)
    raise RuntimeError(f"worker not ready after {timeout}s:\n{log.read_text()[-3000:]}")


def stop_worker(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture(scope="module")
def stack(
    postgres_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    import redis

    from worker.testing import build_tiny_bert

    root = tmp_path_factory.mktemp("stack")
    models_dir = root / "base-models"
    build_tiny_bert(models_dir / "tiny-bert")
    build_tiny_bert(models_dir / "tiny-st-bert", sentence_transformers_pooling="mean")
    broker = f"{redis_url}/{INTEGRATION_REDIS_DB}"
    redis.Redis.from_url(broker).flushdb()
    values = {
        "TUNESERVE_DATABASE_URL": postgres_url,
        "TUNESERVE_BROKER_URL": broker,
        "TUNESERVE_DATA_DIR": str(root / "data"),
        "TUNESERVE_BASE_MODELS_DIR": str(models_dir),
        "TUNESERVE_PROGRESS_WRITE_INTERVAL_S": "0.5",
        "TUNESERVE_PREDICT_TIMEOUT_S": "60",
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    env = {**os.environ, **values, "PYTHONPATH": str(ROOT)}
    log = root / "worker.log"
    mp = pytest.MonkeyPatch()
    for key, value in values.items():
        mp.setenv(key, value)
    reset_caches()
    proc = _start_worker(env, log)
    try:
        _wait_ready(proc, log)
        from app.db import session_scope
        from app.main import create_app
        from app.tenants.service import create_key

        with session_scope() as s:
            _, key = create_key(s, tenant_name="integration")
        with TestClient(create_app(), raise_server_exceptions=False) as client:
            yield Stack(
                client=client,
                headers={"Authorization": f"Bearer {key}"},
                data_dir=root / "data",
                env=env,
                worker_log=log,
            )
    finally:
        stop_worker(proc)
        reset_caches()
        truncate_all(postgres_url)
        redis.Redis.from_url(broker).flushdb()
        mp.undo()
