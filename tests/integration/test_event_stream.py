"""Live event streams (SSE) against real uvicorn processes on PostgreSQL with its real pool
(10 + 10 connections): many open streams leave the API answering; a per-tenant cap held in
Redis across processes (429 beyond it), freed by a closed stream and by a dead process;
``Last-Event-ID`` resumes without repeats; keep-alive comments; the end with the job."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import redis
from sqlalchemy import create_engine, text

from tests.api.test_auth_tenants import insert_jobs
from tests.conftest import reset_caches, truncate_all
from tests.integration.conftest import ROOT, ApiProcess

pytestmark = pytest.mark.integration

REDIS_DB = 7
CAP = 22  # more streams of one tenant than the API's pool has connections (20)
SLOT_TTL_S = 1.5
SETTINGS = {
    "TUNESERVE_MAX_STREAMS_PER_TENANT": str(CAP),
    "TUNESERVE_STREAM_PING_INTERVAL_S": "0.3",
    "TUNESERVE_STREAM_POLL_INTERVAL_S": "0.3",
    "TUNESERVE_STREAM_SLOT_TTL_S": str(SLOT_TTL_S),
    "TUNESERVE_RATE_LIMIT_PER_MINUTE": "0",
}


@dataclass
class Env:
    env: dict[str, str]
    api: ApiProcess
    db_url: str
    tmp: Path
    keys: dict[str, dict[str, str]] = field(default_factory=dict)

    def key(self, tenant: str) -> dict[str, str]:
        if tenant not in self.keys:
            from app.db import session_scope
            from app.tenants.service import create_key

            with session_scope() as s:
                _, plain = create_key(s, tenant_name=tenant)
            self.keys[tenant] = {"Authorization": f"Bearer {plain}"}
        return self.keys[tenant]


@pytest.fixture(scope="module")
def sse(
    postgres_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Env]:
    tmp = tmp_path_factory.mktemp("sse")
    broker = f"{redis_url}/{REDIS_DB}"
    redis.Redis.from_url(broker).flushdb()
    values = {
        "TUNESERVE_DATABASE_URL": postgres_url,
        "TUNESERVE_BROKER_URL": broker,
        "TUNESERVE_DATA_DIR": str(tmp / "data"),
        **SETTINGS,
    }
    mp = pytest.MonkeyPatch()
    for key, value in values.items():
        mp.setenv(key, value)
    reset_caches()
    env = {**os.environ, **values, "PYTHONPATH": str(ROOT)}
    api = ApiProcess(env, tmp / "api.log")
    try:
        yield Env(env=env, api=api, db_url=postgres_url, tmp=tmp)
    finally:
        api.stop()
        reset_caches()
        truncate_all(postgres_url)
        redis.Redis.from_url(broker).flushdb()
        mp.undo()


def add_events(job_id: str, *kinds: str, status: str | None = None) -> list[int]:
    """Events written as a worker writes them (with the job's new status in the same
    transaction when given); their ids."""
    from app.db import session_scope
    from app.jobs.orm import Job, JobEvent

    with session_scope() as s:
        rows = [JobEvent(job_id=job_id, kind=k, message=k) for k in kinds]
        s.add_all(rows)
        if status is not None:
            job = s.get(Job, job_id)
            assert job is not None
            job.status = status
        s.flush()
        return [r.id for r in rows]


@dataclass
class Stream:
    """One SSE response read in the background: its status, then events and comments."""

    status: int = 0
    body: bytes = b""
    retry_after: str | None = None
    ids: list[int] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)
    comments: int = 0
    ended: bool = False
    task: asyncio.Task[None] | None = None

    async def wait(self, condition: Callable[[Stream], bool], timeout: float = 15.0) -> None:
        """Wait (polling) until ``condition`` holds of this stream."""
        deadline = time.monotonic() + timeout
        while not condition(self):
            assert time.monotonic() < deadline, self
            await asyncio.sleep(0.02)

    async def close(self) -> None:
        assert self.task is not None
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


def open_stream(
    client: httpx.AsyncClient, job_id: str, headers: dict[str, str], **params: int
) -> Stream:
    stream = Stream()

    async def read() -> None:
        async with client.stream(
            "GET",
            f"/v1/jobs/{job_id}/events",
            headers={**headers, "Accept": "text/event-stream"},
            params=params,
        ) as r:
            stream.retry_after = r.headers.get("retry-after")
            stream.status = r.status_code
            if r.status_code != 200:
                stream.body = await r.aread()
                stream.ended = True
                return
            async for line in r.aiter_lines():
                if line.startswith("id: "):
                    stream.ids.append(int(line[4:]))
                elif line.startswith("event: "):
                    stream.kinds.append(line[7:])
                elif line.startswith(":"):
                    stream.comments += 1
        stream.ended = True

    stream.task = asyncio.create_task(read())
    return stream


@contextlib.asynccontextmanager
async def client(url: str) -> AsyncIterator[httpx.AsyncClient]:
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as c:
        yield c


def connections_in_transaction(db_url: str) -> int:
    """Connections to the test database holding a transaction open while idle (a request
    session that was not given back)."""
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            return int(
                conn.execute(
                    text(
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                        " AND state = 'idle in transaction'"
                    )
                ).scalar_one()
            )
    finally:
        engine.dispose()


def test_many_streams_leave_the_api_answering_and_are_capped(sse: Env) -> None:
    """Before: 20 streams held the pool's 20 connections; another tenant's GET /v1/jobs took
    27 s (pool timeout) and streams failed. Now a waiting stream holds no connection."""
    (job,) = insert_jobs(["running"], tenant="streamer")
    add_events(job, "started")
    _, other_job = insert_jobs(["queued", "running"], tenant="bystander")
    streamer, bystander = sse.key("streamer"), sse.key("bystander")

    async def scenario() -> None:
        async with client(sse.api.url) as c:
            streams = [open_stream(c, job, streamer) for _ in range(CAP)]
            for s in streams:  # every one got its event and now waits for more
                await s.wait(lambda s: s.status == 200 and s.kinds == ["started"])
            assert connections_in_transaction(sse.db_url) <= 4  # at most the polls in flight

            latencies = []
            for _ in range(10):
                started = time.perf_counter()
                r = await c.get("/v1/jobs", headers=bystander)
                latencies.append(time.perf_counter() - started)
                assert r.status_code == 200, r.text
            print(
                f"GET /v1/jobs of another tenant with {CAP} streams open: max {max(latencies):.3f}s"
            )
            assert max(latencies) < 0.5

            extra = open_stream(c, job, streamer)  # one more than the cap
            await extra.wait(lambda s: s.ended)
            assert extra.status == 429, extra.body
            assert b'"too_many_streams"' in extra.body
            assert extra.retry_after is not None and int(extra.retry_after) >= 1

            theirs = open_stream(c, other_job, bystander)  # another tenant still can
            await theirs.wait(lambda s: s.status == 200)
            await theirs.close()

            await streams[0].close()  # a closed stream gives its slot back
            deadline = time.monotonic() + 10
            while True:
                again = open_stream(c, job, streamer)
                await again.wait(lambda s: s.status != 0)
                if again.status == 200:
                    break
                assert again.status == 429 and time.monotonic() < deadline
                await asyncio.sleep(0.05)
            streams[0] = again
            await again.wait(lambda s: s.kinds == ["started"])

            assert not any(s.ended for s in streams)
            add_events(job, "succeeded", status="succeeded")  # every stream ends with the job
            for s in streams:
                await s.wait(lambda s: s.ended)
                assert s.kinds == ["started", "succeeded"]
            assert all(s.status != 500 for s in streams)

    asyncio.run(scenario())
    assert "Traceback" not in sse.api.log.read_text()


def test_last_event_id_resumes_without_repeats(sse: Env) -> None:
    (job,) = insert_jobs(["running"], tenant="resumer")
    ids = add_events(job, "started", "progress", "progress", "epoch_end", "progress")
    headers = sse.key("resumer")

    async def scenario() -> tuple[list[int], list[int]]:
        async with client(sse.api.url) as c:
            first = open_stream(c, job, {**headers, "Last-Event-ID": str(ids[1])})
            await first.wait(lambda s: s.ids == ids[2:])
            more = add_events(job, "progress", "epoch_end")
            await first.wait(lambda s: s.ids == ids[2:] + more)
            await first.close()  # the connection drops; the client reconnects

            # `after` and the header together: the later of the two wins
            second = open_stream(
                c, job, {**headers, "Last-Event-ID": str(first.ids[-1])}, after=ids[0]
            )
            await second.wait(lambda s: s.status == 200 and s.comments >= 1)  # waits
            assert second.ids == []
            last = add_events(job, "succeeded", status="succeeded")
            await second.wait(lambda s: s.ended)
            assert second.kinds == ["succeeded"]
            return first.ids + second.ids, ids[2:] + more + last

    received, expected = asyncio.run(scenario())
    assert received == expected  # exactly the events after the first Last-Event-ID, once each

    async def after_only() -> Stream:  # the query parameter alone, on a finished job
        async with client(sse.api.url) as c:
            s = open_stream(c, job, headers, after=ids[3])
            await s.wait(lambda s: s.ended)
            return s

    done = asyncio.run(after_only())
    assert done.status == 200 and done.ids == expected[2:]


def test_keep_alive_comments_arrive(sse: Env) -> None:
    (job,) = insert_jobs(["queued"], tenant="quiet")

    async def scenario() -> Stream:
        async with client(sse.api.url) as c:
            s = open_stream(c, job, sse.key("quiet"))
            await s.wait(lambda s: s.comments >= 3, timeout=10)  # every 0.3 s here
            await s.close()
            return s

    s = asyncio.run(scenario())
    assert s.status == 200 and s.ids == []


def test_cap_holds_across_processes_and_a_dead_process_frees_its_slots(sse: Env) -> None:
    (job,) = insert_jobs(["running"], tenant="mortal")
    headers = sse.key("mortal")
    other = ApiProcess(sse.env, sse.tmp / "api-2.log")
    try:

        async def scenario() -> float:
            async with client(other.url) as c2, client(sse.api.url) as c1:
                streams = [open_stream(c2, job, headers) for _ in range(CAP)]
                for s in streams:
                    await s.wait(lambda s: s.status == 200)
                refused = open_stream(c1, job, headers)  # the cap counts the other process's
                await refused.wait(lambda s: s.ended)
                assert refused.status == 429

                other.kill()  # no finally ran there: its slots expire by themselves
                killed = time.monotonic()
                await asyncio.gather(*(s.task for s in streams if s.task), return_exceptions=True)
                while True:
                    again = open_stream(c1, job, headers)
                    await again.wait(lambda s: s.status != 0)
                    if again.status == 200:
                        await again.close()
                        return time.monotonic() - killed
                    assert again.status == 429
                    assert time.monotonic() - killed < SLOT_TTL_S + 10
                    await asyncio.sleep(0.1)

        freed_after = asyncio.run(scenario())
        assert freed_after < SLOT_TTL_S + 10
    finally:
        other.stop()
