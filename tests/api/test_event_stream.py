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


def test_progress_stream_sends_status_progress_and_the_metric_points(
    client: TestClient, auth: dict[str, str]
) -> None:
    """``?progress=true`` (the dashboard's live curves): one ``event: progress`` without an
    ``id`` carrying the status, the progress and every metric point, before the events; none
    without the parameter."""
    import json

    from app.db import session_scope
    from app.jobs.orm import Job, JobEvent, JobMetric

    (job_id,) = insert_jobs(["succeeded"])
    with session_scope() as s:
        job = s.get(Job, job_id)
        assert job is not None
        job.progress = {"epoch": 2.0, "step": 8, "total_steps": 8, "percent": 100.0}
        job.metrics = {"val_accuracy": 0.75}
        s.add_all(
            [
                JobMetric(job_id=job_id, split="train", epoch=1.0, step=4, values={"loss": 0.9}),
                JobMetric(
                    job_id=job_id, split="validation", epoch=1.0, step=4, values={"val_loss": 0.8}
                ),
                JobEvent(job_id=job_id, kind="succeeded", message="done"),
            ]
        )

    def blocks(query: str) -> list[list[str]]:
        url = f"/v1/jobs/{job_id}/events{query}"
        with client.stream("GET", url, headers={**auth, **SSE}) as r:
            assert r.status_code == 200
            text = "".join(r.iter_text())  # ends by itself: the job is over
        return [b.splitlines() for b in text.replace("\r\n", "\n").split("\n\n") if b.strip()]

    sent = blocks("?progress=true")
    assert [line for b in sent for line in b if line.startswith("event:")] == [
        "event: progress",
        "event: succeeded",
    ]
    progress = sent[0]
    assert not any(line.startswith("id:") for line in progress)
    data = json.loads(next(line[5:] for line in progress if line.startswith("data:")))
    assert data["status"] == "succeeded"
    assert data["progress"]["step"] == 8 and data["progress"]["percent"] == 100.0
    assert data["metrics"] == {"val_accuracy": 0.75}
    assert [(p["split"], p["step"], p["values"]) for p in data["points"]] == [
        ("train", 4, {"loss": 0.9}),
        ("validation", 4, {"val_loss": 0.8}),
    ]
    plain = blocks("")
    assert [line for b in plain for line in b if line.startswith("event:")] == ["event: succeeded"]
