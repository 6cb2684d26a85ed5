"""A Parquet bomb at the default caps leaves a real API process's memory bounded.

The landed code accepted a 1 KB Parquet file that decodes to 600 MB and took the API to about
1 GB (1.7 GB peak measured here). The API runs as a real uvicorn process and its peak resident
memory (``VmHWM`` in ``/proc/<pid>/status``) is read before and after the upload.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from tests.api.conftest import csv_bytes, sample_rows
from tests.api.test_dataset_limits import parquet_bomb
from tests.conftest import configure, truncate_all
from tests.integration.conftest import ApiProcess, peak_mb

REDIS_DB = 9
#: how much the API's peak memory may grow while it refuses the bomb (the bomb is 600 MB)
MAX_GROWTH_MB = 250


@pytest.fixture
def api(
    sqlite_url: str, redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[str, dict[str, str], int, Path]]:
    """(base URL, auth headers, pid, data dir) of a real API process with default caps."""
    from app.db import session_scope
    from app.tenants.service import create_key

    broker = f"{redis_url}/{REDIS_DB}"
    data_dir = tmp_path / "data"
    configure(monkeypatch, db_url=sqlite_url, data_dir=data_dir, broker_url=broker)
    with session_scope() as s:
        _, key = create_key(s, tenant_name="bombed")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("TUNESERVE_")},
        "TUNESERVE_DATABASE_URL": sqlite_url,
        "TUNESERVE_BROKER_URL": broker,
        "TUNESERVE_DATA_DIR": str(data_dir),
    }
    api = ApiProcess(env, tmp_path / "api.log", access_log=False)
    try:
        yield api.url, {"Authorization": f"Bearer {key}"}, api.pid, data_dir
    finally:
        api.stop()
        truncate_all(sqlite_url)
        redis.Redis.from_url(broker).flushdb()


def _upload(url: str, headers: dict[str, str], name: str, content: bytes) -> httpx.Response:
    return httpx.post(
        f"{url}/v1/datasets",
        headers=headers,
        files={"file": (name, content, "application/octet-stream")},
        data={"task": "text-classification"},
        timeout=120,
    )


def test_parquet_bomb_leaves_api_memory_bounded(
    api: tuple[str, dict[str, str], int, Path],
) -> None:
    url, headers, pid, data_dir = api
    # a normal upload first, so the baseline includes everything an upload loads
    r = _upload(url, headers, "ok.csv", csv_bytes(sample_rows(6)))
    assert r.status_code == 201, r.text
    before = peak_mb(pid)
    bomb = parquet_bomb(600, 1_000_000)  # 600 MB of text
    assert len(bomb) < 2_000
    r = _upload(url, headers, "bomb.parquet", bomb)
    after = peak_mb(pid)
    print(f"API peak memory {before:.0f} MB -> {after:.0f} MB ({len(bomb)} byte bomb)")
    assert r.status_code == 413, r.text
    assert r.json()["error"]["code"] == "dataset_too_large"
    assert after - before < MAX_GROWTH_MB, (before, after)
    # nothing of it was kept: one dataset (the first), one file
    listed = httpx.get(f"{url}/v1/datasets", headers=headers).json()["data"]
    assert [d["name"] for d in listed] == ["ok.csv"]
    assert [p.name for p in (data_dir / "datasets").rglob("*") if p.is_file()] == ["data.parquet"]
    assert list((data_dir / "tmp" / "uploads").glob("*")) == []
