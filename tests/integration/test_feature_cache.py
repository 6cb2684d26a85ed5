"""Two linear_probe jobs on one dataset, on a real worker: the second finds every feature cached."""

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


def _submit(stack: Stack, dataset_id: str, seed: int) -> str:
    body = {
        "base_model": "tiny-bert",
        "dataset_id": dataset_id,
        "strategy": {"name": "linear_probe"},
        "hyperparameters": {
            "batch_size": 8,
            "max_length": 32,
            "seed": seed,
            "validation_fraction": 0.25,
            "epochs": 3,
            "learning_rate": 0.05,
        },
    }
    r = stack.client.post("/v1/jobs", headers=stack.headers, json=body)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def _wait(stack: Stack, job_id: str, timeout: float = 240) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job: dict[str, Any] = stack.client.get(f"/v1/jobs/{job_id}", headers=stack.headers).json()
        if job["status"] in TERMINAL:
            return job
        time.sleep(0.3)
    raise AssertionError(f"job {job_id} did not finish:\n{stack.worker_log.read_text()[-4000:]}")


def _features_event(stack: Stack, job_id: str) -> dict[str, Any]:
    r = stack.client.get(f"/v1/jobs/{job_id}/events", headers=stack.headers, params={"limit": 500})
    assert r.status_code == 200
    found = [e["data"] for e in r.json()["data"] if e["kind"] == "features_cached"]
    assert len(found) == 1, r.json()
    return dict(found[0])


def _counter(name: str, stack: Stack) -> float:
    """A fleet counter's value on the API's /metrics page (0 when absent)."""
    for line in stack.client.get("/metrics").text.splitlines():
        if line.startswith(f"{name}_total "):
            return float(line.split()[-1])
    return 0.0


def _run(stack: Stack, dataset_id: str, seed: int) -> dict[str, Any]:
    job_id = _submit(stack, dataset_id, seed)
    done = _wait(stack, job_id)
    assert done["status"] == "succeeded", (done, stack.worker_log.read_text()[-4000:])
    return _features_event(stack, job_id)


def test_second_job_on_the_same_dataset_hits_the_feature_cache(stack: Stack) -> None:
    dataset_id = _upload(stack, _csv(30, seed=21))
    first = _run(stack, dataset_id, seed=0)
    examples = first["train_examples"] + first["validation_examples"]
    assert (first["cache_hits"], first["cache_misses"]) == (0, examples)
    assert list((stack.data_dir / "features").glob("*/*/manifest.json"))

    hits_before = _counter("tuneserve_feature_cache_hits", stack)
    misses_before = _counter("tuneserve_feature_cache_misses", stack)
    second = _run(stack, dataset_id, seed=1)  # another seed: another split, the same examples
    assert second["train_examples"] + second["validation_examples"] == examples
    assert (second["cache_hits"], second["cache_misses"]) == (examples, 0)
    # the fleet counters saw it too: training's pass and the final evaluation's, all hits
    assert _counter("tuneserve_feature_cache_hits", stack) - hits_before >= examples
    assert _counter("tuneserve_feature_cache_misses", stack) == misses_before
