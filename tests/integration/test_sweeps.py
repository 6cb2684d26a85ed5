"""A sweep on a real worker: the known winner is ranked first, promoted, and serves.

The known winner: a linear probe on the tiny sentence-transformers BERT (mean pooling) learns
the alpha/beta task in three epochs at learning rate 1e-1 (macro-F1 1.0 on seeds 0-4), while at
1e-6 the head cannot move from its random start (0.29-0.52). Both candidates share the split
and the seed, so they start from the same head.
"""

from __future__ import annotations

import time

import pytest

from tests.integration.conftest import Stack

pytestmark = pytest.mark.integration


def _status(sweep_id: str) -> str:
    from app.db import session_scope
    from app.sweeps.orm import Sweep

    with session_scope() as s:
        sweep = s.get(Sweep, sweep_id)
        assert sweep is not None
        return sweep.status


def test_known_winner_is_ranked_first_promoted_and_serves(stack: Stack) -> None:
    body = {
        "base_model": "tiny-st-bert",
        "dataset_id": stack.upload_learnable(24, seed=11),
        "strategies": [{"name": "linear_probe"}],
        "learning_rates": [1e-6, 1e-1],  # the winner second: the order must not decide
        "hyperparameters": {
            "epochs": 3,
            "batch_size": 8,
            "max_length": 32,
            "validation_fraction": 0.25,
        },
    }
    r = stack.client.post("/v1/sweeps", headers=stack.headers, json=body)
    assert r.status_code == 201, r.text
    sweep_id = r.json()["id"]
    # the worker settles the sweep after its last candidate ends: watch the row itself (a GET
    # would settle it too)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and _status(sweep_id) == "running":
        time.sleep(0.3)
    sweep = stack.client.get(f"/v1/sweeps/{sweep_id}", headers=stack.headers).json()
    assert sweep["status"] == "succeeded", (sweep["leaderboard"], stack.worker.tail(12000))

    first, second = sweep["leaderboard"]
    assert (first["rank"], first["learning_rate"], first["status"]) == (1, 1e-1, "succeeded")
    assert (second["rank"], second["learning_rate"], second["status"]) == (2, 1e-6, "succeeded")
    assert first["value"] >= 0.9 > second["value"], sweep
    assert first["metrics"]["val_macro_f1"] == first["value"]
    assert first["wall_seconds"] > 0 and first["artifact_bytes"] > 0
    assert first["trainable_parameters"] == 2 * 32 + 2  # the probe head only
    assert (sweep["winner_job_id"], sweep["model_id"]) == (first["job_id"], first["model_id"])

    job = stack.client.get(f"/v1/jobs/{first['job_id']}", headers=stack.headers).json()
    assert job["sweep_id"] == sweep_id and job["model_id"] == sweep["model_id"]
    assert job["hyperparameters"]["early_stopping"]["metric"] == "val_macro_f1"

    r = stack.client.post(
        f"/v1/models/{sweep['model_id']}/predict",
        headers=stack.headers,
        json={"inputs": ["alpha kalo alpha minu alpha", "beta beta peso beta rida"]},
    )
    assert r.status_code == 200, r.text
    assert [p["label"] for p in r.json()["predictions"]] == ["A", "B"]
