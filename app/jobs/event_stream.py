"""A job's events as a live Server-Sent Events stream (``GET /v1/jobs/{id}/events`` with
``Accept: text/event-stream``), on sse-starlette's ``EventSourceResponse``.

What a stream holds while it waits: no database connection and no thread. The route
authenticates and loads the job with its request session and closes that session before the
response starts. Then, every ``TUNESERVE_STREAM_POLL_INTERVAL_S``, the stream reads the job's
status and its new events in one short session in the thread pool, at most ``_POLL_THREADS``
streams of this process at a time (so streams never take more of the connection pool or the
thread pool than that, however many are open), and sleeps on the event loop in between.

- Keep-alive: a ``: ping`` comment every ``TUNESERVE_STREAM_PING_INTERVAL_S``.
- Resuming: each event is sent with ``id: <event id>``; a reconnecting client's
  ``Last-Event-ID`` (or the ``after`` query parameter; the later of the two) starts the stream
  after that event.
- The stream ends once it has sent the last events of a job that is over (or was deleted);
  a database error also ends it (the client reconnects with ``Last-Event-ID``).
- Progress, when asked (``?progress=true``, the dashboard does): besides the events, an
  ``event: progress`` without an ``id`` (so ``Last-Event-ID`` still names the last event)
  whenever the job's status, progress or latest metrics changed since the last poll, carrying
  them and the metric points written since (the live training curves); a reconnecting client
  gets the points again from the first and keeps the ones it lacks.
- A cap per tenant (``TUNESERVE_MAX_STREAMS_PER_TENANT``, kept in Redis by
  :mod:`app.jobs.stream_slots`), taken when the response starts: 429 ``too_many_streams`` with
  ``Retry-After`` beyond it, 503 ``stream_unavailable`` when Redis does not answer. The slot is
  given back when the response ends, however it ends (client gone, job over, error, shutdown).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncGenerator
from typing import Any

import anyio
import anyio.to_thread
from fastapi import Request
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.types import Receive, Scope, Send

from app.config import get_settings
from app.db import get_sessionmaker
from app.error_handlers import error_response
from app.errors import AppError, RateLimited, ServiceUnavailable
from app.jobs import stream_slots
from app.jobs.orm import TERMINAL_STATUSES, Job, JobEvent, JobMetric
from app.jobs.schemas import JobEventRead, MetricPoint, Progress
from app.loop_local import LoopLocal

log = logging.getLogger(__name__)

#: streams of one process reading the database at the same time (threads and connections)
_POLL_THREADS = 4
#: events read (and sent) per poll; a full page is followed by another poll at once
_PAGE = 500
#: a send to a client that stopped reading gives up after this long, ending the stream
_SEND_TIMEOUT_S = 30.0


class TooManyStreams(RateLimited):
    code = "too_many_streams"


def wants_stream(request: Request) -> bool:
    return "text/event-stream" in request.headers.get("accept", "")


def open_stream(
    session: Session,
    *,
    job: Job,
    after: int | None,
    last_event_id: int | None,
    progress: bool = False,
) -> JobEventStream:
    """The live stream of ``job``'s events after ``after`` and ``last_event_id``. Closes
    ``session``: the stream holds no connection."""
    tenant_id, job_id = job.tenant_id, job.id
    session.close()
    starts_after = max((v for v in (after, last_event_id) if v is not None), default=None)
    return JobEventStream(tenant_id=tenant_id, job_id=job_id, after=starts_after, progress=progress)


class JobEventStream(EventSourceResponse):
    """sse-starlette's response (pings, disconnect detection, a send timeout) that takes a slot
    of its tenant's cap when it starts and gives it back however it ends."""

    def __init__(
        self, *, tenant_id: str, job_id: str, after: int | None, progress: bool = False
    ) -> None:
        self.settings = get_settings()
        self.tenant_id, self.job_id, self.after = tenant_id, job_id, after
        self.progress = progress
        self.slot: stream_slots.StreamSlot | None = None
        self._stream = self._events()
        super().__init__(
            self._stream,
            ping=self.settings.stream_ping_interval_s,
            sep="\n",
            send_timeout=_SEND_TIMEOUT_S,
            ping_message_factory=lambda: ServerSentEvent(comment="ping", sep="\n"),
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            self.slot = await self._acquire()
        except AppError as exc:
            await self._stream.aclose()  # never started: nothing in it to clean up
            await error_response(exc)(scope, receive, send)
            return
        try:
            await super().__call__(scope, receive, send)
        finally:
            with anyio.CancelScope(shield=True):
                try:
                    await self.slot.release()
                except stream_slots.SlotsUnavailable as exc:  # it expires by itself
                    log.warning("event stream slot not given back (%s)", exc)

    async def _acquire(self) -> stream_slots.StreamSlot:
        cap = self.settings.max_streams_per_tenant
        try:
            slot = await stream_slots.acquire(
                tenant_id=self.tenant_id, cap=cap, ttl_s=self.settings.stream_slot_ttl_s
            )
        except stream_slots.SlotsUnavailable as exc:
            raise ServiceUnavailable(
                "Live event streams are unavailable (the broker does not answer); try again "
                "shortly, or page through the events without 'Accept: text/event-stream'.",
                code="stream_unavailable",
            ) from exc
        if slot is None:
            raise TooManyStreams(
                f"This tenant has {cap} live event streams open, the most it may; close one, "
                "or page through the events without 'Accept: text/event-stream'.",
                details={"limit": cap},
                retry_after_s=self.settings.stream_slot_ttl_s / 3,
            )
        return slot

    async def _events(self) -> AsyncGenerator[ServerSentEvent, None]:
        last = self.after
        watch = ProgressWatch(self.job_id) if self.progress else None
        refreshed_at = time.monotonic()
        while True:
            if self.slot is not None and (
                time.monotonic() - refreshed_at >= self.slot.refresh_every_s
            ):
                refreshed_at = time.monotonic()
                try:
                    await self.slot.refresh()
                except stream_slots.SlotsUnavailable as exc:
                    log.warning("event stream slot not refreshed (%s)", exc)
            try:
                events, done = await anyio.to_thread.run_sync(
                    _poll, self.job_id, last, limiter=_poll_limiters.get()
                )
                update = None
                if watch is not None:
                    update = await anyio.to_thread.run_sync(
                        watch.poll, limiter=_poll_limiters.get()
                    )
            except SQLAlchemyError as exc:
                log.warning("event stream of %s ended on a database error: %s", self.job_id, exc)
                return
            if update is not None:
                yield ServerSentEvent(data=json.dumps(update), event="progress", sep="\n")
            for event in events:
                last = event.id
                yield ServerSentEvent(
                    data=json.dumps(event.model_dump(mode="json")),
                    event=event.kind,
                    id=str(event.id),
                    sep="\n",
                )
            if len(events) >= _PAGE or (watch is not None and watch.more):
                continue  # more are waiting
            if done and not events:
                return
            await anyio.sleep(self.settings.stream_poll_interval_s)


def _poll(job_id: str, after: int | None) -> tuple[list[JobEventRead], bool]:
    """The events after ``after`` and whether the job is over, read on a connection that is
    given back before this returns."""
    with get_sessionmaker()() as session:
        # the status first: a job seen over has all its events committed before this read
        status = session.scalar(select(Job.status).where(Job.id == job_id))
        if status is None:  # deleted
            return [], True
        stmt = select(JobEvent).where(JobEvent.job_id == job_id)
        if after is not None:
            stmt = stmt.where(JobEvent.id > after)
        rows = session.scalars(stmt.order_by(JobEvent.id).limit(_PAGE))
        return [JobEventRead.model_validate(r) for r in rows], status in TERMINAL_STATUSES


class ProgressWatch:
    """What changed in one job's status, progress, latest metrics and metric points since the
    last poll (read just after the events of the same poll and sent before them, so a client
    has a job's final progress and curves by the time it sees the event that ends it)."""

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        self.last_point: int | None = None
        self.seen: tuple[str, dict[str, Any], dict[str, Any]] | None = None
        self.more = False

    def poll(self) -> dict[str, Any] | None:
        with get_sessionmaker()() as session:
            row = session.execute(
                select(Job.status, Job.progress, Job.metrics).where(Job.id == self.job_id)
            ).first()
            if row is None:
                return None
            stmt = select(JobMetric).where(JobMetric.job_id == self.job_id)
            if self.last_point is not None:
                stmt = stmt.where(JobMetric.id > self.last_point)
            points = list(session.scalars(stmt.order_by(JobMetric.id).limit(_PAGE)))
        self.more = len(points) >= _PAGE
        state = (row.status, dict(row.progress or {}), dict(row.metrics or {}))
        if state == self.seen and not points:
            return None
        self.seen = state
        if points:
            self.last_point = points[-1].id
        return {
            "status": state[0],
            "progress": Progress.model_validate(state[1]).model_dump(mode="json"),
            "metrics": state[2],
            "points": [MetricPoint.model_validate(p).model_dump(mode="json") for p in points],
        }


#: per loop, the limit on streams reading the database at once
_poll_limiters: LoopLocal[anyio.CapacityLimiter] = LoopLocal(
    lambda: anyio.CapacityLimiter(_POLL_THREADS)
)
