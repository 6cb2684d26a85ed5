"""``{"name": "auto"}`` at submit: the candidates and each one's rate and epochs planned from
the data and recorded; what the request gives is kept; what cannot work is a clear 422."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from tests.api.conftest import csv_bytes, sample_rows, upload
from tests.api.test_hostile_uploads import assert_error

BASE = "all-MiniLM-L6-v2"


def dataset(client: TestClient, auth: dict[str, str], per_class: int, **fields: str) -> str:
    r = upload(client, auth, csv_bytes(sample_rows(per_class)), **fields)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def submit(client: TestClient, auth: dict[str, str], dataset_id: str, **strategy: Any) -> Any:
    body = {"base_model": BASE, "dataset_id": dataset_id, "strategy": {"name": "auto", **strategy}}
    return client.post("/v1/jobs", headers=auth, json=body)


def test_few_examples_per_class_plan_the_few_shot_strategies(
    client: TestClient, auth: dict[str, str]
) -> None:
    r = submit(client, auth, dataset(client, auth, 8))
    assert r.status_code == 201, r.text
    job = r.json()
    plan = job["strategy"]["plan"]
    assert [c["name"] for c in plan] == ["linear_probe", "contrastive"]
    assert job["strategy"]["candidates"] == ["linear_probe", "contrastive"]
    assert all(c["learning_rate"] == 1e-2 for c in plan)  # heads on frozen features
    first = job["auto"][0]
    assert first["field"] == "strategy.plan" and "few examples per class" in first["reason"]
    assert "linear_probe (rate 0.01" in first["value"]
    # each candidate's rate and epochs are in the plan, not in the shared hyperparameters
    assert {c["field"] for c in job["auto"]} == {"strategy.plan", "batch_size"}


def test_enough_examples_plan_probe_adapters_and_full_fine_tuning(
    client: TestClient, auth: dict[str, str]
) -> None:
    job = submit(client, auth, dataset(client, auth, 20)).json()
    plan = {c["name"]: c for c in job["strategy"]["plan"]}
    assert list(plan) == ["linear_probe", "lora", "full"]
    assert (plan["lora"]["learning_rate"], plan["full"]["learning_rate"]) == (1e-3, 2e-4)
    assert plan["full"]["epochs"] == 20  # 36 rows, batch 8: 5 steps an epoch


def test_given_candidates_rates_and_epochs_are_kept(
    client: TestClient, auth: dict[str, str]
) -> None:
    ds = dataset(client, auth, 20)
    body = {
        "base_model": BASE,
        "dataset_id": ds,
        "strategy": {"name": "auto", "candidates": ["full", "linear_probe"]},
        "hyperparameters": {"learning_rate": 5e-5, "epochs": 2},
    }
    job = client.post("/v1/jobs", headers=auth, json=body).json()
    assert [(c["name"], c["learning_rate"], c["epochs"]) for c in job["strategy"]["plan"]] == [
        ("full", 5e-5, 2),
        ("linear_probe", 5e-5, 2),
    ]
    assert job["auto"][0]["reason"] == "as requested"


def test_what_cannot_work_is_a_422(client: TestClient, auth: dict[str, str]) -> None:
    multilabel = dataset(client, auth, 8, task="text-multilabel")
    err = assert_error(
        submit(client, auth, multilabel, candidates=["contrastive"]), 422, "invalid_input"
    )
    assert err["details"]["field"] == "strategy.candidates" and "contrastive" in err["message"]
    ds = dataset(client, auth, 8)
    err = assert_error(submit(client, auth, ds, candidates=["full", "full"]), 422, "invalid_input")
    assert "at most once" in err["message"]
    err = assert_error(submit(client, auth, ds, candidates=["dann"]), 422, "invalid_input")
    assert "candidates" in err["message"]
    err = assert_error(submit(client, auth, ds, time_budget_minutes=0), 422, "invalid_input")
    assert "time_budget_minutes" in err["message"]
    sweep = {"base_model": BASE, "dataset_id": ds, "strategies": [{"name": "auto"}]}
    err = assert_error(client.post("/v1/sweeps", headers=auth, json=sweep), 422, "invalid_input")
    assert "bake-off of its own" in err["message"]
