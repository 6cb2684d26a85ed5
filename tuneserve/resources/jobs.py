"""``client.jobs``: submit, read, list, cancel and wait for tuning jobs; their events as
pages or as a live stream that resumes where it dropped."""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, AsyncIterator, Generator, Iterator, Mapping
from typing import Any, Literal

import httpx

from tuneserve._core import Call, connection_error
from tuneserve._sse import EventCursor, SSEDecoder
from tuneserve.errors import APIConnectionError, WaitTimeout
from tuneserve.models import Job, JobEvent, JobMetrics, JobReport
from tuneserve.resources._base import AsyncResource, SyncResource, path
from tuneserve.resources._create import create_call, job_body
from tuneserve.strategies import HyperparametersLike, StrategyLike

_ONE = "/v1/jobs/{}"
JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]


def _create(
    base_model: str,
    dataset_id: str,
    strategy: StrategyLike,
    hyperparameters: HyperparametersLike | None,
    validation_dataset_id: str | None,
    test_dataset_id: str | None,
    idempotency_key: str | None,
    extra: Mapping[str, Any] | None,
) -> Call:
    body = job_body(
        base_model=base_model,
        dataset_id=dataset_id,
        strategy=strategy,
        validation_dataset_id=validation_dataset_id,
        test_dataset_id=test_dataset_id,
    )
    return create_call(
        "/v1/jobs",
        body,
        hyperparameters=hyperparameters,
        idempotency_key=idempotency_key,
        extra=extra,
    )


def _stream_call(job_id: str, cursor: EventCursor) -> Call:
    return Call("GET", path(_ONE + "/events", job_id), headers=cursor.headers(), stream=True)


def _ended_early(job_id: str) -> APIConnectionError:
    return APIConnectionError(f"the event stream of job {job_id} kept ending before the job")


class Jobs(SyncResource):
    def create(
        self,
        *,
        base_model: str,
        dataset_id: str,
        strategy: StrategyLike,
        hyperparameters: HyperparametersLike | None = None,
        validation_dataset_id: str | None = None,
        test_dataset_id: str | None = None,
        idempotency_key: str | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> Job:
        """Submit a job (``queued`` at once). ``strategy``: a typed config
        (``tuneserve.strategies.Lora(r=4)``), a dict or a name. An ``Idempotency-Key`` is
        sent (a fresh one unless given), so a retried submit never makes two jobs."""
        call = _create(
            base_model,
            dataset_id,
            strategy,
            hyperparameters,
            validation_dataset_id,
            test_dataset_id,
            idempotency_key,
            extra,
        )
        return Job.model_validate(self._t.request(call))

    def get(self, job_id: str) -> Job:
        return self._get(path(_ONE, job_id), Job)

    def list(self, *, status: JobStatus | None = None, page_size: int = 50) -> Iterator[Job]:
        """Every job of the tenant (of one ``status``), newest first."""
        return self._pages("/v1/jobs", Job, {"status": status, "limit": page_size})

    def cancel(self, job_id: str) -> Job:
        """Cancel: a queued job at once, a running one at its next step."""
        return Job.model_validate(
            self._t.request(Call("POST", path(_ONE + "/cancel", job_id), safe=True))
        )

    def events(
        self, job_id: str, *, after: int | None = None, page_size: int = 100
    ) -> Iterator[JobEvent]:
        """The job's events after event id ``after``, oldest first, page by page."""
        url = path(_ONE + "/events", job_id)
        return self._pages(url, JobEvent, {"limit": page_size}, cursor_param="after", start=after)

    def metrics(self, job_id: str) -> JobMetrics:
        return self._get(path(_ONE + "/metrics", job_id), JobMetrics)

    def report(self, job_id: str) -> JobReport:
        """The evaluation report of a succeeded job (``Conflict`` before)."""
        return self._get(path(_ONE + "/report", job_id), JobReport)

    def stream_events(
        self, job_id: str, *, last_event_id: int | None = None
    ) -> Generator[JobEvent, None, None]:
        """The job's events live (Server-Sent Events), from the first (or after
        ``last_event_id``) until its terminal event. A dropped connection is reopened with
        ``Last-Event-ID``: no event is lost or repeated."""
        cursor = EventCursor(last_event_id)
        drops = 0
        while True:
            try:
                with self._t.stream(_stream_call(job_id, cursor)) as response:
                    decoder = SSEDecoder()
                    for line in response.iter_lines():
                        sse = decoder.feed(line)
                        event = cursor.accept(sse) if sse is not None else None
                        if event is not None:
                            drops = 0
                            yield event
                            if event.terminal:
                                return
            except httpx.TransportError as exc:  # the connection dropped mid-stream
                delay = self._t.policy.reconnect_delay(drops)
                if delay is None:
                    raise connection_error(exc) from exc
            else:  # the stream ended without the job's last event
                if self.get(job_id).done:
                    for event in self.events(job_id, after=cursor.last_event_id):
                        if cursor.take(event) is not None:
                            yield event
                    return
                delay = self._t.policy.reconnect_delay(drops)
                if delay is None:
                    raise _ended_early(job_id)
            drops += 1
            self._t.sleep(delay)

    def wait(self, job_id: str, *, timeout: float | None = None, poll_interval: float = 2.0) -> Job:
        """Poll until the job is over; the final job, whatever its status. ``WaitTimeout``
        after ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            job = self.get(job_id)
            if job.done:
                return job
            if deadline is not None and time.monotonic() >= deadline:
                raise WaitTimeout(f"job {job_id} still {job.status} after {timeout}s", last=job)
            left = poll_interval if deadline is None else deadline - time.monotonic()
            self._t.sleep(max(0.0, min(poll_interval, left)))


class AsyncJobs(AsyncResource):
    async def create(
        self,
        *,
        base_model: str,
        dataset_id: str,
        strategy: StrategyLike,
        hyperparameters: HyperparametersLike | None = None,
        validation_dataset_id: str | None = None,
        test_dataset_id: str | None = None,
        idempotency_key: str | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> Job:
        """As :meth:`Jobs.create`."""
        call = _create(
            base_model,
            dataset_id,
            strategy,
            hyperparameters,
            validation_dataset_id,
            test_dataset_id,
            idempotency_key,
            extra,
        )
        return Job.model_validate(await self._t.request(call))

    async def get(self, job_id: str) -> Job:
        return await self._get(path(_ONE, job_id), Job)

    def list(self, *, status: JobStatus | None = None, page_size: int = 50) -> AsyncIterator[Job]:
        return self._pages("/v1/jobs", Job, {"status": status, "limit": page_size})

    async def cancel(self, job_id: str) -> Job:
        call = Call("POST", path(_ONE + "/cancel", job_id), safe=True)
        return Job.model_validate(await self._t.request(call))

    def events(
        self, job_id: str, *, after: int | None = None, page_size: int = 100
    ) -> AsyncIterator[JobEvent]:
        url = path(_ONE + "/events", job_id)
        return self._pages(url, JobEvent, {"limit": page_size}, cursor_param="after", start=after)

    async def metrics(self, job_id: str) -> JobMetrics:
        return await self._get(path(_ONE + "/metrics", job_id), JobMetrics)

    async def report(self, job_id: str) -> JobReport:
        return await self._get(path(_ONE + "/report", job_id), JobReport)

    async def stream_events(
        self, job_id: str, *, last_event_id: int | None = None
    ) -> AsyncGenerator[JobEvent, None]:
        """As :meth:`Jobs.stream_events`; to stop early, close it (``contextlib.aclosing``)
        so that its connection is given back at once."""
        cursor = EventCursor(last_event_id)
        drops = 0
        while True:
            try:
                async with self._t.stream(_stream_call(job_id, cursor)) as response:
                    decoder = SSEDecoder()
                    async for line in response.aiter_lines():
                        sse = decoder.feed(line)
                        event = cursor.accept(sse) if sse is not None else None
                        if event is not None:
                            drops = 0
                            yield event
                            if event.terminal:
                                return
            except httpx.TransportError as exc:
                delay = self._t.policy.reconnect_delay(drops)
                if delay is None:
                    raise connection_error(exc) from exc
            else:
                if (await self.get(job_id)).done:
                    async for event in self.events(job_id, after=cursor.last_event_id):
                        if cursor.take(event) is not None:
                            yield event
                    return
                delay = self._t.policy.reconnect_delay(drops)
                if delay is None:
                    raise _ended_early(job_id)
            drops += 1
            await self._t.sleep(delay)

    async def wait(
        self, job_id: str, *, timeout: float | None = None, poll_interval: float = 2.0
    ) -> Job:
        """As :meth:`Jobs.wait`."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            job = await self.get(job_id)
            if job.done:
                return job
            if deadline is not None and time.monotonic() >= deadline:
                raise WaitTimeout(f"job {job_id} still {job.status} after {timeout}s", last=job)
            left = poll_interval if deadline is None else deadline - time.monotonic()
            await self._t.sleep(max(0.0, min(poll_interval, left)))
