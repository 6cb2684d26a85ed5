"""Webhooks end to end: real training workers end jobs, a real maintenance worker (with beat)
delivers their events to a real HTTP receiver on 127.0.0.1, signed; a failed attempt is
retried; the attempts are recorded."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app.webhooks.signing import verify_signature
from tests.api.test_webhooks import Receiver
from tests.integration.conftest import Stack, WorkerProcess

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def hooks_worker(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    """The maintenance queue's worker, with beat: a one-second retry, a sweep every second."""
    env = {
        **stack.env,
        "TUNESERVE_WEBHOOK_BACKOFF_S": "[1]",
        "TUNESERVE_WEBHOOK_SWEEP_INTERVAL_S": "1",
    }
    assert env["TUNESERVE_WEBHOOK_ALLOW_PRIVATE"] == "true"
    log_dir = Path(tmp_path_factory.mktemp("hooks-worker"))
    worker = WorkerProcess(env, log_dir, queues="maintenance", concurrency=2, beat=True)
    worker.start()
    try:
        yield worker
    finally:
        worker.stop()


def register(stack: Stack, receiver: Receiver, events: list[str]) -> dict[str, Any]:
    r = stack.client.post(
        "/v1/webhooks",
        headers=stack.headers,
        json={"url": f"{receiver.url}/hooks", "events": events},
    )
    assert r.status_code == 201, r.text
    return dict(r.json())


def wait_for(what: str, check: Any, timeout: float, tail: Any) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"{what} did not happen in {timeout} s:\n{tail()}")


def deliveries(stack: Stack, hook: dict[str, Any]) -> list[dict[str, Any]]:
    path = f"/v1/webhooks/{hook['id']}/deliveries"
    return list(stack.client.get(path, headers=stack.headers).json()["data"])


def submit(stack: Stack, dataset_id: str) -> str:
    body = {
        "base_model": "tiny-bert",
        "dataset_id": dataset_id,
        "strategy": {"name": "linear_probe"},
        "hyperparameters": {"epochs": 1, "batch_size": 8, "max_length": 32},
    }
    r = stack.client.post("/v1/jobs", headers=stack.headers, json=body)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def test_a_succeeded_job_is_delivered_once_and_signed(
    stack: Stack, hooks_worker: WorkerProcess, receiver: Receiver
) -> None:
    hook = register(stack, receiver, ["job.succeeded", "job.failed"])
    try:
        job_id = submit(stack, stack.upload_learnable(12, seed=5))
        tail = lambda: stack.worker.tail() + hooks_worker.tail()  # noqa: E731
        delivered = wait_for(
            "the delivery",
            lambda: [d for d in deliveries(stack, hook) if d["status"] == "delivered"],
            timeout=240,
            tail=tail,
        )
        job = stack.client.get(f"/v1/jobs/{job_id}", headers=stack.headers).json()
        assert job["status"] == "succeeded", job

        (got,) = receiver.received()  # exactly one request
        (row,) = deliveries(stack, hook)  # and one delivery
        assert row == delivered[0]
        assert (row["event_type"], row["attempts"], row["response_status"]) == (
            "job.succeeded",
            1,
            200,
        )
        assert got.path == "/hooks"
        assert got.headers["tuneserve-event"] == "job.succeeded"
        assert got.headers["tuneserve-delivery"] == row["id"]
        assert verify_signature(hook["secret"], got.headers["tuneserve-signature"], got.body)
        event = json.loads(got.body)
        assert (event["id"], event["type"]) == (row["event_id"], "job.succeeded")
        data = event["data"]
        assert (data["object"], data["id"], data["status"]) == ("job", job_id, "succeeded")
        assert data["model_id"] == job["model_id"] and data["error"] is None
        assert data["metrics"] and all(isinstance(v, int | float) for v in data["metrics"].values())
    finally:
        stack.client.delete(f"/v1/webhooks/{hook['id']}", headers=stack.headers)


def test_a_cancelled_job_is_retried_after_a_500(stack: Stack, hooks_worker: WorkerProcess) -> None:
    receiver = Receiver(statuses=(500,))
    hook = register(stack, receiver, ["job.cancelled"])
    try:
        job_id = submit(stack, stack.upload_learnable(12, seed=6))
        r = stack.client.post(f"/v1/jobs/{job_id}/cancel", headers=stack.headers)
        assert r.status_code == 200, r.text
        tail = lambda: stack.worker.tail() + hooks_worker.tail()  # noqa: E731
        (row,) = wait_for(
            "the retried delivery",
            lambda: [d for d in deliveries(stack, hook) if d["status"] == "delivered"],
            timeout=120,
            tail=tail,
        )
        assert (row["event_type"], row["attempts"], row["response_status"]) == (
            "job.cancelled",
            2,
            200,
        )
        assert row["last_error"] is None and row["last_attempt_at"] >= row["created_at"]
        first, second = receiver.received()
        assert first.body == second.body  # the same event, signed again at each attempt
        assert first.headers["tuneserve-delivery"] == second.headers["tuneserve-delivery"]
        for got in (first, second):
            assert verify_signature(hook["secret"], got.headers["tuneserve-signature"], got.body)
        data = json.loads(second.body)["data"]
        assert (data["id"], data["status"]) == (job_id, "cancelled")
    finally:
        stack.client.delete(f"/v1/webhooks/{hook['id']}", headers=stack.headers)
        receiver.close()
