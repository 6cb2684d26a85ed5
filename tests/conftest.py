"""Shared fixtures: real PostgreSQL and Redis, migrated databases, settings per test.

PostgreSQL and Redis are used for real. Locally a missing service skips the tests that need
it; in CI (``CI=true``) it is a failure.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

PG_ADMIN_URL = os.environ.get(
    "TUNESERVE_TEST_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("TUNESERVE_TEST_REDIS_URL", "redis://127.0.0.1:6379")
IN_CI = os.environ.get("CI", "").lower() == "true"


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def require_service(name: str, host: str, port: int) -> None:
    if _reachable(host, port):
        return
    message = f"{name} is not reachable at {host}:{port}"
    if IN_CI:
        pytest.fail(message + " (in CI a missing service is a failure)")
    pytest.skip(message)


def reset_caches() -> None:
    from app.config import get_settings
    from app.db import get_engine, get_sessionmaker
    from app.inference.gateway import reset_gateways
    from app.limits.redis_client import reset_limits_redis
    from app.models.router import target_cache
    from app.tasks import producer
    from app.telemetry import reset_client

    reset_client()
    reset_gateways()
    reset_limits_redis()
    target_cache.cache_clear()
    if get_engine.cache_info().currsize:
        get_engine().dispose()
    for cached in (get_settings, get_engine, get_sessionmaker, producer):
        cached.cache_clear()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for this test session; dropped at the end."""
    require_service("PostgreSQL", "127.0.0.1", 5432)
    from sqlalchemy import create_engine, text

    from app.migrate import upgrade

    name = f"tuneserve_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    upgrade(url)
    yield url
    reset_caches()
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    from app.migrate import upgrade

    url = f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'tuneserve.db'}"
    upgrade(url)
    return url


@pytest.fixture(scope="session")
def redis_url() -> str:
    require_service("Redis", "127.0.0.1", 6379)
    return REDIS_URL


def truncate_all(url: str) -> None:
    from sqlalchemy import create_engine, text

    from app.orm import Base

    engine = create_engine(url)
    with engine.begin() as conn:
        for table in reversed(Base.metadata.sorted_tables):
            conn.execute(text(f'DELETE FROM "{table.name}"'))
    engine.dispose()


def configure(
    monkeypatch: pytest.MonkeyPatch, *, db_url: str, data_dir: Path, broker_url: str, **extra: str
) -> None:
    monkeypatch.setenv("TUNESERVE_DATABASE_URL", db_url)
    monkeypatch.setenv("TUNESERVE_DATA_DIR", str(data_dir))
    monkeypatch.setenv("TUNESERVE_BROKER_URL", broker_url)
    for key, value in extra.items():
        monkeypatch.setenv(f"TUNESERVE_{key.upper()}", value)
    reset_caches()


# -- tiny random models (built once per session; worker.testing_models imports torch lazily) --


@pytest.fixture(scope="session")
def tiny_resnet_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random ResNetForImageClassification directory (3 classes, 32 px processor)."""
    from worker.testing_models import tiny_resnet_dir as build

    return build(tmp_path_factory.mktemp("tiny-resnet"))


@pytest.fixture(scope="session")
def tiny_vit_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random ViTForImageClassification directory (32 px, 8 px patches)."""
    from worker.testing_models import tiny_vit_dir as build

    return build(tmp_path_factory.mktemp("tiny-vit"))


@pytest.fixture(scope="session")
def tiny_convnext_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random ConvNextForImageClassification directory."""
    from worker.testing_models import tiny_convnext_dir as build

    return build(tmp_path_factory.mktemp("tiny-convnext"))


@pytest.fixture(scope="session")
def tiny_mobilenet_v2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random MobileNetV2ForImageClassification directory (torchvision-style padding)."""
    from worker.testing_models import tiny_mobilenet_v2_dir as build

    return build(tmp_path_factory.mktemp("tiny-mobilenet-v2"))


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random CLIPModel directory with its CLIPProcessor (BPE tokenizer + 32 px images)."""
    from worker.testing_models import tiny_clip_dir as build

    return build(tmp_path_factory.mktemp("tiny-clip"))


@pytest.fixture(scope="session")
def tiny_gpt2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random GPT-2 (2 layers, 32 wide) with a byte-level BPE tokenizer; no pad token."""
    from worker.testing_models import tiny_gpt2_dir as build

    return build(tmp_path_factory.mktemp("tiny-gpt2"))
