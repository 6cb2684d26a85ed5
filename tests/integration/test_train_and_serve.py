"""Upload → submit → poll → predict on a real worker; cancel; redelivery is a no-op."""

from __future__ import annotations

import csv
import io
import time
from typing import Any

import pytest

from tests.integration.conftest import Stack
from worker.testing import learnable_examples

pytestmark = pytest.mark.integration

TERMINAL = {"succeeded", "failed", "cancelled"}


def _csv(n_per_class: int, seed: int = 0) -> bytes:
    texts, labels = learnable_examples(n_per_class, seed)
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["text", "label"])
    writer.writerows(zip(texts, labels, strict=True))
    return buf.getvalue().encode()


def _upload(stack: Stack, data: bytes) -> str:
    r = stack.client.post(
        "/v1/datasets",
        headers=stack.headers,
        files={"file": ("learnable.csv", data, "text/csv")},
        data={"task": "text-classification", "name": "learnable"},
    )
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def _submit(stack: Stack, dataset_id: str, strategy: dict[str, Any], **hp: Any) -> dict[str, Any]:
    body = {
        "base_model": "tiny-bert",
        "dataset_id": dataset_id,
        "strategy": strategy,
        "hyperparameters": {
            "batch_size": 8,
            "max_length": 32,
            "seed": 0,
            "validation_fraction": 0.25,
            **hp,
        },
    }
    r = stack.client.post("/v1/jobs", headers=stack.headers, json=body)
    assert r.status_code == 201, r.text
    job: dict[str, Any] = r.json()
    assert job["status"] == "queued"
    return job


def _wait(stack: Stack, job_id: str, until: set[str], timeout: float = 240) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    seen_running = None
    while time.monotonic() < deadline:
        job: dict[str, Any] = stack.client.get(f"/v1/jobs/{job_id}", headers=stack.headers).json()
        if job["status"] == "running" and job["progress"]["step"] > 0:
            seen_running = job
        if job["status"] in until:
            job["_seen_running"] = seen_running
            return job
        time.sleep(0.3)
    raise AssertionError(
        f"job {job_id} not in {until} after {timeout}s: {job}\n"
        f"{stack.worker_log.read_text()[-4000:]}"
    )


def _events(stack: Stack, job_id: str) -> list[dict[str, Any]]:
    r = stack.client.get(f"/v1/jobs/{job_id}/events", headers=stack.headers, params={"limit": 500})
    assert r.status_code == 200
    return list(r.json()["data"])


@pytest.mark.parametrize(
    ("strategy", "hp"),
    [
        ({"name": "linear_probe"}, {"epochs": 30, "learning_rate": 0.05}),
        ({"name": "full"}, {"epochs": 6, "learning_rate": 3e-3}),
    ],
)
def test_upload_train_poll_predict(
    stack: Stack, strategy: dict[str, Any], hp: dict[str, Any]
) -> None:
    dataset_id = _upload(stack, _csv(40))
    job = _submit(stack, dataset_id, strategy, **hp)
    done = _wait(stack, job["id"], TERMINAL)
    assert done["status"] == "succeeded", (done, stack.worker_log.read_text()[-4000:])
    assert done["attempt"] == 1
    assert done["progress"]["percent"] == 100.0
    assert done["progress"]["total_steps"] >= done["progress"]["step"] > 0
    assert done["metrics"]["val_accuracy"] >= 0.9, done["metrics"]
    assert "val_macro_f1" in done["metrics"] and "val_loss" in done["metrics"]
    # the job's metrics are those of the served evaluation, chosen by validation loss
    selection = done["selection"]
    assert selection["metric"] == "val_loss" and selection["mode"] == "min"
    assert done["metrics"]["val_loss"] == pytest.approx(selection["selected"]["val_loss"])
    assert selection["selected"]["val_loss"] <= selection["last"]["val_loss"]
    evaluations = selection["evaluations"]
    assert 1 <= evaluations <= hp["epochs"]
    assert selection["stopped_early"] == (evaluations < hp["epochs"])
    kinds = [e["kind"] for e in _events(stack, job["id"])]
    assert kinds[0] == "queued" and "started" in kinds and kinds[-1] == "succeeded"
    assert kinds.count("epoch_end") == evaluations
    series = stack.client.get(f"/v1/jobs/{job['id']}/metrics", headers=stack.headers).json()
    assert sum(1 for p in series["series"] if p["split"] == "validation") == evaluations

    model_id = done["model_id"]
    model = stack.client.get(f"/v1/models/{model_id}", headers=stack.headers).json()
    assert model["labels"] == ["A", "B"] and model["strategy"] == strategy["name"]
    assert (stack.data_dir / "models" / model_id / "manifest.json").is_file()

    texts, labels = learnable_examples(10, seed=99)
    r = stack.client.post(
        f"/v1/models/{model_id}/predict", headers=stack.headers, json={"inputs": texts, "top_k": 2}
    )
    assert r.status_code == 200, r.text
    preds = r.json()["predictions"]
    assert len(preds) == len(texts)
    assert all(len(p["top_k"]) == 2 and p["top_k"][0]["label"] == p["label"] for p in preds)
    accuracy = sum(p["label"] == y for p, y in zip(preds, labels, strict=True)) / len(labels)
    assert accuracy >= 0.9
    long_input = " ".join(["alpha"] * 5000)  # far beyond the model's 64 positions: truncated
    r = stack.client.post(
        f"/v1/models/{model_id}/predict", headers=stack.headers, json={"inputs": [long_input]}
    )
    assert r.status_code == 200 and r.json()["predictions"][0]["label"] == "A"


def test_cancel_running_job(stack: Stack) -> None:
    dataset_id = _upload(stack, _csv(60, seed=1))
    job = _submit(stack, dataset_id, {"name": "full"}, epochs=100, batch_size=4)
    running = _wait(stack, job["id"], {"running"} | TERMINAL, timeout=120)
    while running["status"] == "running" and running["progress"]["step"] == 0:
        time.sleep(0.2)
        running = stack.client.get(f"/v1/jobs/{job['id']}", headers=stack.headers).json()
    assert running["status"] == "running", running
    asked = time.monotonic()
    r = stack.client.post(f"/v1/jobs/{job['id']}/cancel", headers=stack.headers)
    assert r.status_code == 200 and r.json()["cancel_requested"] is True
    done = _wait(stack, job["id"], TERMINAL, timeout=30)
    assert done["status"] == "cancelled"
    assert time.monotonic() - asked < 10
    assert done["model_id"] is None
    assert done["progress"]["step"] < done["progress"]["total_steps"]
    models_dir = stack.data_dir / "models"
    leftovers = [p.name for p in models_dir.iterdir()] if models_dir.exists() else []
    assert not [n for n in leftovers if n.startswith(".")], leftovers
    kinds = [e["kind"] for e in _events(stack, job["id"])]
    assert "cancel_requested" in kinds and kinds[-1] == "cancelled"


def _no_op_lines(stack: Stack, job_id: str) -> list[str]:
    """The worker's log lines saying a train message for ``job_id`` found no job to claim."""
    logs = sorted(stack.worker.log_dir.glob("worker-*.log"))
    lines = [line for p in logs for line in p.read_text(errors="replace").splitlines()]
    return [line for line in lines if job_id in line and "no queued job" in line]


def test_redelivered_train_message_is_a_no_op(stack: Stack) -> None:
    import redis

    from app.tasks import TRAIN_TASK, send_task
    from worker.maintenance import jobs_in_broker
    from worker.runner import run

    dataset_id = _upload(stack, _csv(20, seed=2))
    job = _submit(stack, dataset_id, {"name": "linear_probe"}, epochs=2)
    done = _wait(stack, job["id"], TERMINAL)
    assert done["status"] == "succeeded"
    # the same message again, twice, through the broker to the real worker ...
    send_task(TRAIN_TASK, [job["id"]])
    send_task(TRAIN_TASK, [job["id"]])
    # ... handled: the worker logged a no-op for each (in its main process, or in a pool
    # process when it raced the check), and neither is waiting in Redis or held unacked
    broker = redis.Redis.from_url(stack.env["TUNESERVE_BROKER_URL"])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        handled = _no_op_lines(stack, job["id"])
        if len(handled) >= 2 and jobs_in_broker() == set():
            break
        time.sleep(0.2)
    assert len(handled) == 2, (handled, stack.worker.tail())
    assert jobs_in_broker() == set() and broker.llen("train") == 0
    # ... and a direct duplicate call: nothing is claimed, nothing changes
    assert run(job["id"]) is None
    after = stack.client.get(f"/v1/jobs/{job['id']}", headers=stack.headers).json()
    assert after["status"] == "succeeded" and after["attempt"] == 1
    assert after["model_id"] == done["model_id"]
    kinds = [e["kind"] for e in _events(stack, job["id"])]
    assert kinds.count("started") == 1 and kinds.count("succeeded") == 1
    models = stack.client.get("/v1/models", headers=stack.headers).json()["data"]
    assert sum(1 for m in models if m["job_id"] == job["id"]) == 1


def test_failure_is_reported_readably(stack: Stack) -> None:
    dataset_id = _upload(stack, _csv(20, seed=3))
    # the canonical file vanishes (a broken volume, say): the job must fail, not hang
    parquet = stack.data_dir / "datasets" / dataset_id / "data.parquet"
    parquet.unlink()
    job = _submit(stack, dataset_id, {"name": "linear_probe"}, epochs=1)
    done = _wait(stack, job["id"], TERMINAL)
    assert done["status"] == "failed"
    assert done["error"]["code"] == "training_error"
    assert "data.parquet" in done["error"]["message"]
    kinds = [e["kind"] for e in _events(stack, job["id"])]
    assert kinds[-1] == "failed"
