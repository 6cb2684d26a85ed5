"""The body and headers of the creating POSTs of jobs and sweeps."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from tuneserve._core import Call
from tuneserve.strategies import (
    HyperparametersLike,
    StrategyLike,
    hyperparameters_body,
    strategy_body,
)


def create_call(
    url: str,
    body: dict[str, Any],
    *,
    hyperparameters: HyperparametersLike | None,
    idempotency_key: str | None,
    extra: Mapping[str, Any] | None,
) -> Call:
    """``POST url`` with an ``Idempotency-Key`` (a fresh one unless given): the same key on a
    retry returns the job or sweep the first attempt created, so retries are safe."""
    hp = hyperparameters_body(hyperparameters)
    if hp is not None:
        body["hyperparameters"] = hp
    body.update(extra or {})
    key = idempotency_key or f"sdk-{uuid.uuid4().hex}"
    return Call("POST", url, json=body, headers={"Idempotency-Key": key})


def job_body(
    *,
    base_model: str,
    dataset_id: str,
    strategy: StrategyLike,
    validation_dataset_id: str | None,
    test_dataset_id: str | None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "base_model": base_model,
        "dataset_id": dataset_id,
        "strategy": strategy_body(strategy),
    }
    if validation_dataset_id is not None:
        body["validation_dataset_id"] = validation_dataset_id
    if test_dataset_id is not None:
        body["test_dataset_id"] = test_dataset_id
    return body


def sweep_body(
    *,
    base_model: str,
    dataset_id: str,
    strategies: Sequence[StrategyLike],
    learning_rates: Sequence[float] | None,
    metric: str | None,
    validation_dataset_id: str | None,
    test_dataset_id: str | None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "base_model": base_model,
        "dataset_id": dataset_id,
        "strategies": [strategy_body(s) for s in strategies],
    }
    optional = {
        "learning_rates": list(learning_rates) if learning_rates is not None else None,
        "metric": metric,
        "validation_dataset_id": validation_dataset_id,
        "test_dataset_id": test_dataset_id,
    }
    body.update({k: v for k, v in optional.items() if v is not None})
    return body
