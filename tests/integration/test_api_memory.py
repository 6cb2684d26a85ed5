"""The API's memory stays flat under bodies it must refuse (a real uvicorn process; its peak
resident memory read from /proc): a 200 MB JSON body without a key, one that declares its
length and one that does not, and one with a key past the JSON cap. Before the middleware,
the first one raised the API from 378 MB to 955 MB before its 401."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from app.migrate import upgrade
from tests.integration.conftest import ApiProcess, peak_mb

pytestmark = pytest.mark.integration

REDIS_DB = 10
BODY_MB = 200
#: what refusing all of them may add to the API's peak memory
MAX_GROWTH_MB = 40


@pytest.fixture
def api(redis_url: str, tmp_path: Path) -> Iterator[tuple[int, int, str]]:
    """(pid, port, an API key) of a real API process on SQLite."""
    from sqlalchemy import create_engine
    from sqlalchemy.orm import Session

    from app.tenants.service import create_key

    db = f"sqlite:///{tmp_path / 'api.db'}"
    upgrade(db)
    engine = create_engine(db)
    with Session(engine) as s:
        _, key = create_key(s, tenant_name="memory")
        s.commit()
    engine.dispose()
    broker = f"{redis_url}/{REDIS_DB}"
    redis.Redis.from_url(broker).flushdb()
    env = {
        **os.environ,
        "TUNESERVE_DATABASE_URL": db,
        "TUNESERVE_BROKER_URL": broker,
        "TUNESERVE_DATA_DIR": str(tmp_path),
    }
    api = ApiProcess(env, tmp_path / "api.log")
    try:
        yield api.pid, api.port, key
    finally:
        api.stop()
        redis.Redis.from_url(broker).flushdb()


def _send(port: int, headers: list[str], megabytes: int) -> bytes:
    """Send a request whose body is ``megabytes`` MB of JSON-ish bytes (from one reused
    buffer, so this process stays small); return the start of whatever the API answered."""
    chunk = b"[" + b"1," * (512 * 1024 - 1) + b"1"  # 1 MiB
    head = "POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall((head + "".join(h + "\r\n" for h in headers) + "\r\n").encode())
        chunked = not any(h.lower().startswith("content-length") for h in headers)
        try:
            for _ in range(megabytes):
                data = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n" if chunked else chunk
                sock.sendall(data)
            if chunked:
                sock.sendall(b"0\r\n\r\n")
        except OSError:
            pass  # the API answered and closed while we were still sending
        try:
            return sock.recv(4096)
        except OSError:
            return b""


def test_refused_bodies_do_not_grow_the_api(api: tuple[int, int, str]) -> None:
    pid, port, key = api
    before = peak_mb(pid)
    length = f"Content-Length: {BODY_MB * 1024 * 1024}"
    answers = {
        "no key, declared length": _send(port, [length], BODY_MB),
        "no key, chunked": _send(port, ["Transfer-Encoding: chunked"], BODY_MB),
        "key, chunked": _send(
            port, ["Transfer-Encoding: chunked", f"Authorization: Bearer {key}"], BODY_MB
        ),
    }
    grown_mb = peak_mb(pid) - before
    statuses = {name: answer.split(b"\r\n", 1)[0] for name, answer in answers.items()}
    assert statuses == {
        "no key, declared length": b"HTTP/1.1 413 Request Entity Too Large",
        "no key, chunked": b"HTTP/1.1 401 Unauthorized",
        "key, chunked": b"HTTP/1.1 413 Request Entity Too Large",
    }, statuses
    assert grown_mb < MAX_GROWTH_MB, f"the API's peak memory grew by {grown_mb:.0f} MB"
    print(f"peak RSS before {before:.0f} MB, grew {grown_mb:.1f} MB")
