"""The event stream route over the real app: what it answers when Redis (which keeps the
per-tenant stream cap) is down, and a malformed ``Last-Event-ID``. The streams themselves are
tested against real uvicorn processes in tests/integration/test_event_stream.py."""

from __future__ import annotations

from collections.abc import Callable

from fastapi.testclient import TestClient

from tests.api.test_auth_tenants import insert_jobs
from tests.api.test_hostile_uploads import assert_error

SSE = {"Accept": "text/event-stream"}


def test_stream_with_redis_down_is_a_503(
    down_client: TestClient, make_key: Callable[[str], dict[str, str]]
) -> None:
    auth = make_key("acme")
    (job_id,) = insert_jobs(["running"])
    r = down_client.get(f"/v1/jobs/{job_id}/events", headers={**auth, **SSE})
    assert_error(r, 503, "stream_unavailable")
    # the paged log needs no Redis
    assert down_client.get(f"/v1/jobs/{job_id}/events", headers=auth).status_code == 200


def test_malformed_last_event_id_is_a_422(client: TestClient, auth: dict[str, str]) -> None:
    (job_id,) = insert_jobs(["running"])
    for value in ("soon", "-1", str(2**63)):
        r = client.get(f"/v1/jobs/{job_id}/events", headers={**auth, **SSE, "Last-Event-ID": value})
        assert_error(r, 422, "invalid_input")


def test_stream_of_a_finished_job_sends_what_is_left_and_ends(
    client: TestClient, auth: dict[str, str]
) -> None:
    from app.db import session_scope
    from app.jobs.orm import JobEvent

    (job_id,) = insert_jobs(["succeeded"])
    with session_scope() as s:
        rows = [JobEvent(job_id=job_id, kind=k, message=k) for k in ("started", "succeeded")]
        s.add_all(rows)
        s.flush()
        first = rows[0].id
    headers = {**auth, **SSE, "Last-Event-ID": str(first)}
    with client.stream("GET", f"/v1/jobs/{job_id}/events", headers=headers) as r:
        assert r.status_code == 200
        lines = list(r.iter_lines())  # ends by itself
    assert [line for line in lines if line.startswith("event:")] == ["event: succeeded"]
