"""The real app over httpx (Starlette's TestClient) against SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient

from tests.conftest import configure, reset_caches, truncate_all

API_REDIS_DB = 13
#: a broker address nothing listens on: Redis is down
CLOSED_BROKER = "redis://127.0.0.1:1/0"


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue(f"{request.param}_url"))


@pytest.fixture
def api_env(
    db_url: str, redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Path]:
    data_dir = tmp_path / "data"
    configure(
        monkeypatch,
        db_url=db_url,
        data_dir=data_dir,
        broker_url=f"{redis_url}/{API_REDIS_DB}",
        max_upload_bytes="200000",
    )
    yield data_dir
    reset_caches()
    truncate_all(db_url)
    redis.Redis.from_url(f"{redis_url}/{API_REDIS_DB}").flushdb()


@pytest.fixture
def broker(redis_url: str) -> redis.Redis:
    """The API's queue database, to look at what was sent."""
    return redis.Redis.from_url(f"{redis_url}/{API_REDIS_DB}")


@pytest.fixture
def down_client(api_env: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    """The app with its broker pointed at a closed port (Redis down); the database is up."""
    from app.main import create_app

    monkeypatch.setenv("TUNESERVE_BROKER_URL", CLOSED_BROKER)
    reset_caches()
    with TestClient(create_app(), raise_server_exceptions=False) as c:
        yield c


@pytest.fixture
def client(api_env: Path) -> Iterator[TestClient]:
    from app.main import create_app

    with TestClient(create_app(), raise_server_exceptions=False) as c:
        yield c


@pytest.fixture
def make_key(api_env: Path) -> Callable[[str], dict[str, str]]:
    from app.db import session_scope
    from app.tenants.service import create_key

    def make(tenant: str = "acme") -> dict[str, str]:
        with session_scope() as s:
            _, plain = create_key(s, tenant_name=tenant)
        return {"Authorization": f"Bearer {plain}"}

    return make


@pytest.fixture
def auth(make_key: Callable[[str], dict[str, str]]) -> dict[str, str]:
    return make_key("acme")


def csv_bytes(rows: list[tuple[str, str]], header: str = "text,label") -> bytes:
    lines = [header] + [f'"{t}",{y}' for t, y in rows]
    return ("\n".join(lines) + "\n").encode()


def sample_rows(n_per_class: int = 6) -> list[tuple[str, str]]:
    rows = []
    for i in range(n_per_class):
        rows.append((f"the match ended with a late goal number {i}", "sport"))
        rows.append((f"the parliament passed the budget bill {i}", "politics"))
    return rows


def upload(
    client: TestClient,
    headers: dict[str, str],
    data: bytes,
    *,
    filename: str = "data.csv",
    **fields: str,
):  # type: ignore[no-untyped-def]
    return client.post(
        "/v1/datasets",
        headers=headers,
        files={"file": (filename, data, "application/octet-stream")},
        data={"task": "text-classification", **fields},
    )
