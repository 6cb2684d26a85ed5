"""Prometheus metrics of the API process, exported by ``GET /metrics``.

- :class:`RequestMetricsMiddleware` counts every HTTP request and times it, labelled by the
  matched route's path template (``/v1/jobs/{job_id}``, never the raw path, so the number of
  series stays bounded) and the status actually sent.
- :class:`JobsByStatusCollector` reads the jobs table on each scrape (``tuneserve_jobs``).
- :class:`FleetCounters` exports the fleet counters kept in Redis (:mod:`app.telemetry`).

Everything lives in prometheus_client's default registry and is registered once per process,
when this module is first imported; ``create_app()`` may then run any number of times.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

from fastapi import Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from sqlalchemy import func, select
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.db import get_engine
from app.jobs.orm import JOB_STATUSES, Job
from app.route_table import matching_route
from app.telemetry import FLEET_COUNTERS, FleetCounterCollector

log = logging.getLogger(__name__)

#: the route label of a request that matched no route (a 404, or a redirect to add a slash)
UNMATCHED = "unmatched"
#: the method label of a method outside this set (clients may send any token)
OTHER_METHOD = "other"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

#: from a cached read (5 ms) to a predict that waits for a cold model (60 s)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

REQUESTS = Counter(
    "tuneserve_http_requests",
    "HTTP requests answered by the API, by method, route template and status code.",
    ["method", "route", "status"],
)
LATENCY = Histogram(
    "tuneserve_http_request_duration_seconds",
    "Time from receiving an HTTP request to the end of its response (a stream's whole length).",
    ["method", "route"],
    buckets=LATENCY_BUCKETS,
)

JOBS_HELP = "Tuning jobs in the database, by status."


def route_template(scope: Scope) -> str:
    """The path template of the route that handled ``scope`` (set by the router), or
    :data:`UNMATCHED`. A request answered before routing (401, 403, 413, 429 from the
    middleware) is matched against the app's routes here."""
    route = scope.get("route")
    if route is None:
        route = matching_route(scope)
    if route is None:
        return UNMATCHED
    template = getattr(route, "path_format", None) or getattr(route, "path", None)
    return template if isinstance(template, str) and template else UNMATCHED


class RequestMetricsMiddleware:
    """Counts and times every HTTP request: a pure ASGI middleware that only watches the
    ``http.response.start`` message, so a streamed response (SSE) passes through unbuffered.

    Errors that the app's handlers render are counted with the status they send; an exception
    that escapes the app is counted as a 500."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        # label children by label values: a dict lookup per request, not prometheus_client's
        # label validation and lock; bounded because every label value is
        self._counters: dict[tuple[str, str, int], Counter] = {}
        self._histograms: dict[tuple[str, str], Histogram] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 0
        started = time.perf_counter()

        async def send_watching(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_watching)
        except Exception:
            status = 500
            raise
        finally:
            self._observe(scope, status or 500, time.perf_counter() - started)

    def _observe(self, scope: Scope, status: int, seconds: float) -> None:
        method = scope["method"] if scope["method"] in _METHODS else OTHER_METHOD
        route = route_template(scope)
        counter = self._counters.get((method, route, status))
        if counter is None:
            counter = REQUESTS.labels(method, route, str(status))
            self._counters[(method, route, status)] = counter
        histogram = self._histograms.get((method, route))
        if histogram is None:
            histogram = LATENCY.labels(method, route)
            self._histograms[(method, route)] = histogram
        counter.inc()
        histogram.observe(seconds)


class JobsByStatusCollector:
    """``tuneserve_jobs{status}``: one ``GROUP BY`` on each scrape, every lifecycle status
    present (0 when none); nothing at all when the database does not answer."""

    def describe(self) -> Iterator[Metric]:
        # given, so that registering the collector does not query the database
        yield GaugeMetricFamily("tuneserve_jobs", JOBS_HELP, labels=["status"])

    def collect(self) -> Iterator[Metric]:
        counts = dict.fromkeys(JOB_STATUSES, 0)
        try:
            with get_engine().connect() as conn:
                rows = conn.execute(select(Job.status, func.count()).group_by(Job.status)).all()
        except Exception as exc:
            log.warning("tuneserve_jobs not exported: the database did not answer: %s", exc)
            return
        for status, n in rows:
            counts[status] = int(n)
        family = GaugeMetricFamily("tuneserve_jobs", JOBS_HELP, labels=["status"])
        for status, n in counts.items():
            family.add_metric([status], n)
        yield family


class FleetCounters(FleetCounterCollector):
    """The fleet counters, with a ``describe`` so that registering them reads nothing from
    Redis (the registry would otherwise call ``collect`` to learn their names)."""

    def describe(self) -> Iterator[Metric]:
        for name, help_text in FLEET_COUNTERS.items():
            yield CounterMetricFamily(name, help_text)


REGISTRY.register(JobsByStatusCollector())
REGISTRY.register(FleetCounters())


def metrics_response() -> Response:
    """Every metric of this process in the Prometheus text format. Blocking (it queries the
    database and Redis): call it from a sync route, which runs in the thread pool."""
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
