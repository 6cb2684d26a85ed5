"""Two linear_probe jobs on one dataset, on a real worker: the second finds every feature cached."""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.conftest import Stack
from tests.integration.test_train_and_serve import TERMINAL, _csv, _submit, _upload, _wait

pytestmark = pytest.mark.integration


def _run(stack: Stack, dataset_id: str, seed: int) -> dict[str, Any]:
    job = _submit(
        stack, dataset_id, {"name": "linear_probe"}, seed=seed, epochs=3, learning_rate=0.05
    )
    done = _wait(stack, job["id"], TERMINAL)
    assert done["status"] == "succeeded", (done, stack.worker_log.read_text()[-4000:])
    return _features_event(stack, job["id"])


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
