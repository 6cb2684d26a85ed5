"""GET /metrics: request counts and latency by route template and status, jobs by status, the
fleet counters; the middleware under errors and streams.

prometheus_client's registry lives as long as the test process, so every check reads a value
before and after and compares the difference."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from tests.api.test_auth_tenants import insert_jobs
from tests.conftest import reset_caches

JOB_STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")

#: every sample of a scrape: (name, labels) -> value
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(client: TestClient) -> Samples:
    """Every sample on /metrics, by name and labels."""
    r = client.get("/metrics")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def requests_total(samples: Samples, method: str, route: str, status: int) -> float:
    return value(
        samples, "tuneserve_http_requests_total", method=method, route=route, status=str(status)
    )


def test_requests_counted_by_route_template_and_status(
    client: TestClient, auth: dict[str, str]
) -> None:
    before = scrape(client)
    for _ in range(2):
        assert client.get("/v1/jobs", headers=auth).status_code == 200
    for _ in range(3):
        assert client.get("/v1/jobs/job_missing", headers=auth).status_code == 404
    assert client.get("/v1/jobs/job_missing").status_code == 401
    assert client.get("/v1/jobs", headers=auth, params={"limit": 0}).status_code == 422
    assert client.get("/no/such/path").status_code == 404
    assert client.post("/healthz").status_code == 405
    after = scrape(client)

    expected = [
        ("GET", "/v1/jobs", 200, 2),
        ("GET", "/v1/jobs/{job_id}", 404, 3),
        ("GET", "/v1/jobs/{job_id}", 401, 1),
        ("GET", "/v1/jobs", 422, 1),
        ("GET", "unmatched", 404, 1),
        ("POST", "/healthz", 405, 1),
    ]
    for method, route, status, n in expected:
        delta = requests_total(after, method, route, status) - requests_total(
            before, method, route, status
        )
        assert delta == n, (method, route, status)
    # the raw path never becomes a label value
    assert not [key for key in after if any("job_missing" in v for _, v in key[1])]
    assert not [key for key in after if any(v == "/no/such/path" for _, v in key[1])]
    # the scrape before this one was counted under its own template
    assert requests_total(after, "GET", "/metrics", 200) >= 1


def test_latency_histogram(client: TestClient, auth: dict[str, str]) -> None:
    name = "tuneserve_http_request_duration_seconds"
    labels = {"method": "GET", "route": "/v1/jobs/{job_id}"}
    before = scrape(client)
    for _ in range(4):
        client.get("/v1/jobs/job_missing", headers=auth)
    after = scrape(client)

    assert value(after, f"{name}_count", **labels) - value(before, f"{name}_count", **labels) == 4
    assert value(after, f"{name}_sum", **labels) > value(before, f"{name}_sum", **labels)
    inf = {**labels, "le": "+Inf"}
    assert value(after, f"{name}_bucket", **inf) - value(before, f"{name}_bucket", **inf) == 4
    buckets = {dict(k[1])["le"] for k in after if k[0] == f"{name}_bucket"}
    assert {"0.005", "60.0", "+Inf"} <= buckets


def test_an_escaping_exception_counts_as_500(api_env: Path) -> None:
    from app.main import create_app

    app = create_app()

    def boom() -> None:
        raise RuntimeError("boom")

    app.add_api_route("/test-boom", boom)
    with TestClient(app, raise_server_exceptions=False) as c:
        before = scrape(c)
        assert c.get("/test-boom").status_code == 500
        after = scrape(c)
    assert (
        requests_total(after, "GET", "/test-boom", 500)
        - requests_total(before, "GET", "/test-boom", 500)
        == 1
    )


def test_metrics_is_not_in_the_openapi_schema(client: TestClient) -> None:
    assert "/metrics" not in client.get("/openapi.json").json()["paths"]


def test_create_app_many_times(api_env: Path) -> None:
    """Metrics and collectors are registered once per process, however many apps are made."""
    from app.main import create_app

    for _ in range(3):
        with TestClient(create_app()) as c:
            assert c.get("/metrics").status_code == 200


def test_jobs_by_status(client: TestClient) -> None:
    before = scrape(client)
    for status in JOB_STATUSES:  # every status is there, with 0 when no job has it
        assert ("tuneserve_jobs", frozenset({("status", status)})) in before
    insert_jobs(["queued", "queued", "running", "succeeded", "succeeded", "succeeded", "cancelled"])
    after = scrape(client)

    added = {"queued": 2, "running": 1, "succeeded": 3, "failed": 0, "cancelled": 1}
    for status, n in added.items():
        delta = value(after, "tuneserve_jobs", status=status) - value(
            before, "tuneserve_jobs", status=status
        )
        assert delta == n, status


def test_jobs_by_status_zero_on_an_empty_table(client: TestClient, db_url: str) -> None:
    from tests.conftest import truncate_all

    truncate_all(db_url)
    samples = scrape(client)
    assert {s: value(samples, "tuneserve_jobs", status=s) for s in JOB_STATUSES} == dict.fromkeys(
        JOB_STATUSES, 0.0
    )
    assert ("tuneserve_jobs", frozenset({("status", "failed")})) in samples


def test_scrape_with_the_database_down(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    assert "tuneserve_jobs" in client.get("/metrics").text
    monkeypatch.setenv("TUNESERVE_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:1/none")
    reset_caches()
    r = client.get("/metrics")
    assert r.status_code == 200
    assert "tuneserve_jobs" not in r.text
    assert "tuneserve_http_requests_total" in r.text


def test_fleet_counters(client: TestClient) -> None:
    from app import telemetry

    name = "tuneserve_feature_cache_hits_total"
    before = value(scrape(client), name)
    telemetry.count("tuneserve_feature_cache_hits", 3)
    after = scrape(client)
    assert value(after, name) - before == 3
    for counter in telemetry.FLEET_COUNTERS:
        assert (f"{counter}_total", frozenset()) in after


def test_scrape_with_redis_down(down_client: TestClient) -> None:
    r = down_client.get("/metrics")
    assert r.status_code == 200
    assert "tuneserve_feature_cache_hits" not in r.text
    assert "tuneserve_jobs{" in r.text


def _set_status(job_id: str, status: str) -> None:
    from app.db import session_scope
    from app.jobs.orm import Job

    with session_scope() as s:
        job = s.get(Job, job_id)
        assert job is not None
        job.status = status


@pytest.fixture
def running_job(auth: dict[str, str]) -> Iterator[str]:
    """A running job of the tenant of ``auth``, with one event."""
    from app.db import session_scope
    from app.jobs.orm import JobEvent

    (job_id,) = insert_jobs(["running"])
    with session_scope() as s:
        s.add(JobEvent(job_id=job_id, kind="started", message="started"))
    # ends the job even if the test fails to; a stream that never ends would hang the test
    timer = threading.Timer(20.0, _set_status, args=(job_id, "succeeded"))
    timer.start()
    yield job_id
    timer.cancel()


def test_sse_streams_through_the_middleware(
    client: TestClient, auth: dict[str, str], running_job: str
) -> None:
    route = "/v1/jobs/{job_id}/events"
    before = scrape(client)
    started = time.monotonic()
    headers = {**auth, "Accept": "text/event-stream"}
    with client.stream("GET", f"/v1/jobs/{running_job}/events", headers=headers) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        lines = r.iter_lines()
        first = next(line for line in lines if line.startswith("event:"))
        # the first event arrived while the job still runs: nothing was buffered
        assert first == "event: started"
        assert time.monotonic() - started < 10
        _set_status(running_job, "succeeded")
        rest = list(lines)  # the stream ends once the job has
    assert not [line for line in rest if line.startswith("event:")]
    after = scrape(client)
    assert requests_total(after, "GET", route, 200) - requests_total(before, "GET", route, 200) == 1


def test_middleware_passes_each_chunk_on_at_once() -> None:
    """Every body message reaches the server before the app sends the next one."""
    from app.metrics import RequestMetricsMiddleware

    sent: list[bytes] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for chunk in (b"a", b"b"):
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            assert sent[-1] == chunk
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.body":
            sent.append(message["body"])

    scope = {"type": "http", "method": "GET", "path": "/x", "headers": []}
    asyncio.run(RequestMetricsMiddleware(app)(scope, receive, send))
    assert sent == [b"a", b"b", b""]
