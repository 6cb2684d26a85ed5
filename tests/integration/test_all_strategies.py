"""Every strategy name runs end to end through the API on a real worker (tiny models)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from app.contract.strategies import STRATEGY_NAMES
from tests.integration.conftest import Stack
from worker.testing import learnable_examples

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def datasets(stack: Stack) -> dict[str, str]:
    labeled = stack.upload_learnable(24, seed=11)
    unlabeled_texts, _ = learnable_examples(30, seed=12)
    unlabeled = stack.upload_csv([[t] for t in unlabeled_texts], ["text"], "unlabeled-text")
    return {"labeled": labeled, "unlabeled": unlabeled}


STRATEGIES: dict[str, dict[str, Any]] = {
    "full": {},
    "linear_probe": {},
    "partial": {"trainable_layers": 1},
    "gradual_unfreeze": {},
    "lora": {"r": 4},
    "dann": {"target_dataset_id": "{unlabeled}"},
    "dapt": {"unlabeled_dataset_id": "{unlabeled}", "mlm_steps": 5, "then": "full"},
    "contrastive": {"num_pairs": 40},
    "auto": {},
}


#: strategies that train only on images: run end to end in test_model_families.py
IMAGE_ONLY = {"zero_shot"}


def test_the_table_covers_every_strategy() -> None:
    assert set(STRATEGIES) == STRATEGY_NAMES - IMAGE_ONLY


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_strategy_end_to_end(stack: Stack, datasets: dict[str, str], name: str) -> None:
    strategy = {
        "name": name,
        **{
            k: (v.format(**datasets) if isinstance(v, str) else v)
            for k, v in STRATEGIES[name].items()
        },
    }
    body = {
        "base_model": "tiny-bert",
        "dataset_id": datasets["labeled"],
        "strategy": strategy,
        "hyperparameters": {
            "epochs": 2,
            "batch_size": 8,
            "max_length": 32,
            "validation_fraction": 0.25,
        },
    }
    r = stack.client.post("/v1/jobs", headers=stack.headers, json=body)
    assert r.status_code == 201, r.text
    job_id = r.json()["id"]
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        job = stack.client.get(f"/v1/jobs/{job_id}", headers=stack.headers).json()
        if job["status"] in {"succeeded", "failed", "cancelled"}:
            break
        time.sleep(0.3)
    assert job["status"] == "succeeded", (job, stack.worker.tail())
    r = stack.client.post(
        f"/v1/models/{job['model_id']}/predict",
        headers=stack.headers,
        json={"inputs": ["alpha alpha kalo", "beta beta mino"], "top_k": 2},
    )
    assert r.status_code == 200, r.text
    if name == "auto":  # a bake-off of the candidates chosen from the data, in the report
        planned = [c["name"] for c in job["strategy"]["plan"]]
        assert planned == ["linear_probe", "lora", "full"]  # 48 rows, 24 a class: small data
        report = stack.client.get(f"/v1/jobs/{job_id}/report", headers=stack.headers).json()
        bakeoff = report["selection"]["bakeoff"]
        assert [run["name"] for run in bakeoff["runs"]] == planned
        assert [run["name"] for run in bakeoff["runs"] if run["won"]] == [bakeoff["winner"]]
        assert report["strategy"] == bakeoff["winner"]
        assert job["selection"]["bakeoff"] == bakeoff  # on the job itself too
    predictions = r.json()["predictions"]
    assert len(predictions) == 2, predictions  # one per input, each ranking both labels
    for p in predictions:
        assert [s["label"] for s in p["top_k"]] in (["A", "B"], ["B", "A"]), p
        assert p["label"] == p["top_k"][0]["label"]
        assert p["score"] == p["top_k"][0]["score"] >= p["top_k"][1]["score"]
        assert 0.0 <= p["top_k"][1]["score"] <= p["top_k"][0]["score"] <= 1.0


def test_mismatches_are_rejected_at_submit_naming_the_field(
    stack: Stack, datasets: dict[str, str]
) -> None:
    def submit(strategy: dict[str, Any], dataset: str, status: int = 422) -> dict[str, Any]:
        r = stack.client.post(
            "/v1/jobs",
            headers=stack.headers,
            json={"base_model": "tiny-bert", "dataset_id": dataset, "strategy": strategy},
        )
        assert r.status_code == status, r.text
        return dict(r.json()["error"])

    err = submit({"name": "dann"}, datasets["labeled"])
    assert "target_dataset_id" in err["message"]
    err = submit({"name": "dann", "target_dataset_id": datasets["labeled"]}, datasets["labeled"])
    assert err["details"]["field"] == "strategy.target_dataset_id"
    err = submit({"name": "contrastive"}, datasets["unlabeled"])
    assert err["details"]["field"] == "dataset_id"
    err = submit({"name": "dapt", "unlabeled_dataset_id": "ds_nope"}, datasets["labeled"], 404)
    assert err["details"]["field"] == "strategy.unlabeled_dataset_id"
