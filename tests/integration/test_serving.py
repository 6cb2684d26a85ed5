"""Predictions on a real inference worker process: fair between tenants, LoRA and probes on
one shared encoder, metrics, and a deleted model."""

from __future__ import annotations

import statistics
import threading
import time
from typing import Any

import pytest

from tests.integration.conftest import Stack, metric_value
from tests.integration.test_train_and_serve import TERMINAL, _csv, _submit, _upload, _wait
from worker.testing import learnable_examples

pytestmark = pytest.mark.integration


def _key(tenant: str) -> dict[str, str]:
    from app.db import session_scope
    from app.tenants.service import create_key

    with session_scope() as s:
        _, plain = create_key(s, tenant_name=tenant)
    return {"Authorization": f"Bearer {plain}"}


def _train(stack: Stack, headers: dict[str, str], strategy: dict[str, Any], seed: int) -> str:
    original = stack.headers
    stack.headers = headers
    try:
        dataset_id = _upload(stack, _csv(30, seed=seed))
        job = _submit(stack, dataset_id, strategy, epochs=20, learning_rate=0.05)
        done = _wait(stack, job["id"], TERMINAL)
    finally:
        stack.headers = original
    assert done["status"] == "succeeded", done
    return str(done["model_id"])


@pytest.fixture(scope="module")
def tenants(stack: Stack) -> dict[str, tuple[dict[str, str], list[str]]]:
    """Two tenants, each with models of its own: (headers, model ids)."""
    big, small = _key("big-tenant"), _key("small-tenant")
    return {
        "big": (big, [_train(stack, big, {"name": "linear_probe"}, seed=21)]),
        "small": (
            small,
            [
                _train(stack, small, {"name": "linear_probe"}, seed=22),
                _train(stack, small, {"name": "lora", "r": 4}, seed=23),
            ],
        ),
    }


def _predict(stack: Stack, headers: dict[str, str], model_id: str, inputs: list[str]) -> Any:
    return stack.client.post(
        f"/v1/models/{model_id}/predict", headers=headers, json={"inputs": inputs}
    )


def test_a_small_tenant_keeps_a_short_latency_while_another_saturates(
    stack: Stack, tenants: dict[str, tuple[dict[str, str], list[str]]]
) -> None:
    (big_headers, [big_model]), (small_headers, small_models) = tenants["big"], tenants["small"]
    heavy = [" ".join(["kalo alpha sopa beta"] * 40)] * 64  # 64 inputs at the model's 64 tokens
    stop = threading.Event()
    big_done: list[int] = []

    def flood() -> None:
        while not stop.is_set():
            r = _predict(stack, big_headers, big_model, heavy)
            assert r.status_code == 200, r.text
            big_done.append(1)

    floods = [threading.Thread(target=flood) for _ in range(4)]
    for thread in floods:
        thread.start()
    for model_id in small_models:  # loaded once before (a cold load is not a queueing delay)
        assert _predict(stack, small_headers, model_id, ["alpha"]).status_code == 200
    latencies: list[float] = []
    try:
        while not big_done:  # the worker is busy with the big tenant
            time.sleep(0.05)
        texts, labels = learnable_examples(20, seed=31)
        for i, (text, label) in enumerate(zip(texts, labels, strict=True)):
            started = time.perf_counter()
            r = _predict(stack, small_headers, small_models[i % 2], [text])
            latencies.append(time.perf_counter() - started)
            assert r.status_code == 200, r.text
            assert r.json()["predictions"][0]["label"] == label
        pending = metric_value(stack.inference.metrics(), "tuneserve_infer_pending_inputs")
    finally:
        stop.set()
        for thread in floods:
            thread.join()
    p99 = statistics.quantiles(latencies, n=100)[98]
    print(
        f"small tenant: p50 {statistics.median(latencies):.3f}s p99 {p99:.3f}s "
        f"while the big tenant finished {len(big_done)} requests of 64 inputs"
    )
    assert pending > 0  # the big tenant really kept the worker saturated
    assert len(big_done) >= 4
    assert p99 < 1.0


def test_probe_and_lora_share_the_encoder_on_the_worker(
    stack: Stack, tenants: dict[str, tuple[dict[str, str], list[str]]]
) -> None:
    headers, models = tenants["small"]
    for model_id in models:
        assert _predict(stack, headers, model_id, ["alpha kalo"]).status_code == 200
    page = stack.inference.metrics()
    backbones = metric_value(page, "tuneserve_infer_backbones_loaded")
    loaded = metric_value(page, "tuneserve_infer_models_loaded")
    # the big tenant's probe and the small tenant's probe and LoRA: three models, one encoder
    assert loaded >= 3 and backbones == 1
    assert metric_value(page, "tuneserve_infer_requests_total", 'outcome="ok"') >= 2
    assert metric_value(page, "tuneserve_infer_forward_seconds_count") > 0
    assert metric_value(page, "tuneserve_infer_model_bytes") > 0


def test_a_deleted_model_is_not_served(
    stack: Stack, tenants: dict[str, tuple[dict[str, str], list[str]]]
) -> None:
    headers, _ = tenants["big"]
    model_id = _train(stack, headers, {"name": "linear_probe"}, seed=24)
    assert _predict(stack, headers, model_id, ["alpha"]).status_code == 200
    assert stack.client.delete(f"/v1/models/{model_id}", headers=headers).status_code == 204
    r = _predict(stack, headers, model_id, ["alpha"])
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"


def test_prediction_inputs_are_never_logged(
    stack: Stack,
    tenants: dict[str, tuple[dict[str, str], list[str]]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    import logging
    import uuid

    headers, models = tenants["small"]
    marker = f"secret-{uuid.uuid4().hex}"
    with caplog.at_level(logging.DEBUG):
        assert _predict(stack, headers, models[0], [f"alpha {marker}"]).status_code == 200
        # a malformed request is refused without echoing it either
        r = stack.client.post(
            f"/v1/models/{models[0]}/predict", headers=headers, json={"inputs": marker}
        )
        assert r.status_code == 422 and marker not in r.text
    assert marker not in caplog.text
    assert marker not in stack.inference.tail(10**7)
    assert marker not in stack.worker_log.read_text(errors="replace")
