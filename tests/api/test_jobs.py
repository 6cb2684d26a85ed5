"""Jobs over HTTP: submit (validated), the train message in Redis, idempotency, cancel, events,
metrics and lists."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient

from tests.api.conftest import csv_bytes, sample_rows, upload
from tests.api.test_hostile_uploads import assert_error

BASE = "all-MiniLM-L6-v2"


@pytest.fixture
def dataset(client: TestClient, auth: dict[str, str]) -> dict[str, Any]:
    # 8 per class: the audit's few_examples threshold, so these jobs carry no audit findings
    r = upload(client, auth, csv_bytes(sample_rows(8)))
    assert r.status_code == 201, r.text
    return dict(r.json())


def submit(client: TestClient, auth: dict[str, str], dataset_id: str, **body: Any) -> Any:
    payload = {"base_model": BASE, "dataset_id": dataset_id, "strategy": {"name": "full"}, **body}
    return client.post("/v1/jobs", headers=auth, json=payload)


def train_messages(broker: redis.Redis) -> list[dict[str, Any]]:
    """The messages Celery's Redis transport holds for the ``train`` queue (a list by that name)."""
    return [json.loads(raw) for raw in broker.lrange("train", 0, -1)]  # type: ignore[union-attr]


def job_count() -> int:
    from sqlalchemy import func, select

    from app.db import session_scope
    from app.jobs.orm import Job

    with session_scope() as s:
        return int(s.scalar(select(func.count()).select_from(Job)) or 0)


@pytest.mark.parametrize("strategy", ["full", "linear_probe"])
def test_submit(
    client: TestClient,
    auth: dict[str, str],
    dataset: dict[str, Any],
    broker: redis.Redis,
    strategy: str,
) -> None:
    assert broker.llen("train") == 0
    r = submit(client, auth, dataset["id"], strategy={"name": strategy})
    assert r.status_code == 201, r.text
    job = r.json()
    assert job["status"] == "queued"
    assert job["id"].startswith("job_")
    assert job["base_model"] == BASE
    assert job["dataset_id"] == dataset["id"]
    assert job["task"] == "text-classification"
    assert job["strategy"]["name"] == strategy
    # left out: chosen from the data (16 rows, 14 trained on), recorded with the reasons
    assert [c["field"] for c in job["auto"]] == ["batch_size", "learning_rate", "epochs"]
    auto = {c["field"]: c["value"] for c in job["auto"]}
    assert auto == {k: job["hyperparameters"][k] for k in auto}
    assert auto["batch_size"] == 8 and auto["epochs"] == 20  # 2 steps an epoch: the cap
    assert auto["learning_rate"] == (2e-4 if strategy == "full" else 1e-2)
    assert "14 training examples" in job["auto"][0]["reason"]
    assert job["model_id"] is None and job["error"] is None
    assert job["started_at"] is None and job["finished_at"] is None
    assert job["progress"]["percent"] == 0

    # the train task really went to Redis, carrying the job id
    messages = train_messages(broker)
    assert len(messages) == 1
    headers = messages[0]["headers"]
    assert headers["task"] == "tuneserve.train"
    assert messages[0]["properties"]["body_encoding"] == "base64"
    args, kwargs, _ = json.loads(base64.b64decode(messages[0]["body"]))
    assert args == [job["id"]] and kwargs == {}

    r = client.get(f"/v1/jobs/{job['id']}/events", headers=auth)
    assert r.status_code == 200, r.text
    events = r.json()["data"]
    assert [e["kind"] for e in events] == ["queued", "auto"]
    assert events[1]["data"]["choices"] == job["auto"]
    assert events[1]["message"].startswith("Chosen automatically: batch_size 8 (")
    assert r.json()["next_cursor"] is None

    assert client.get(f"/v1/jobs/{job['id']}", headers=auth).json() == job


def test_given_hyperparameters_are_not_chosen_and_auto_means_left_out(
    client: TestClient, auth: dict[str, str], dataset: dict[str, Any]
) -> None:
    given = {"epochs": 2, "batch_size": 4, "learning_rate": 1e-4}
    job = submit(client, auth, dataset["id"], hyperparameters=given).json()
    assert job["auto"] == [] and {k: job["hyperparameters"][k] for k in given} == given
    events = client.get(f"/v1/jobs/{job['id']}/events", headers=auth).json()["data"]
    assert [e["kind"] for e in events] == ["queued"]
    words = {"epochs": "auto", "batch_size": "auto", "learning_rate": "auto"}
    said = submit(client, auth, dataset["id"], hyperparameters=words).json()
    left_out = submit(client, auth, dataset["id"]).json()
    assert (
        said["auto"] == left_out["auto"] and said["hyperparameters"] == left_out["hyperparameters"]
    )
    bad = submit(client, auth, dataset["id"], hyperparameters={"epochs": "many"})
    assert bad.status_code == 422 and "epochs" in bad.json()["error"]["message"]


def test_unknown_base_model(
    client: TestClient, auth: dict[str, str], dataset: dict[str, Any], broker: redis.Redis
) -> None:
    r = submit(client, auth, dataset["id"], base_model="no-such-model")
    err = assert_error(r, 422, "invalid_input")
    assert err["details"]["field"] == "base_model"
    assert "base_model" in err["message"] or "base model" in err["message"]
    assert job_count() == 0
    assert broker.llen("train") == 0


@pytest.mark.parametrize(
    "strategy",
    [{"name": "nope"}, {}, {"name": "full", "unknown_knob": 1}, {"name": "lora", "r": 0}],
    ids=["unknown-name", "no-name", "unknown-field", "out-of-bounds"],
)
def test_bad_strategy(
    client: TestClient, auth: dict[str, str], dataset: dict[str, Any], strategy: dict[str, Any]
) -> None:
    r = submit(client, auth, dataset["id"], strategy=strategy)
    err = assert_error(r, 422, "invalid_input")
    assert any(e["loc"][:2] == ["body", "strategy"] for e in err["details"]), err
    assert job_count() == 0


@pytest.mark.parametrize(
    "hyper,field",
    [
        ({"epochs": 0}, "epochs"),
        ({"epochs": 101}, "epochs"),
        ({"batch_size": 0}, "batch_size"),
        ({"learning_rate": -1}, "learning_rate"),
        ({"learning_rate": 0}, "learning_rate"),
        ({"max_length": 1}, "max_length"),
        ({"long_text": "middle"}, "long_text"),
        ({"max_chunks": 17}, "max_chunks"),
        ({"seed": -1}, "seed"),
        ({"epochs": "many"}, "epochs"),
        ({"warmup": 0.1}, "warmup"),
    ],
)
def test_bad_hyperparameters(
    client: TestClient,
    auth: dict[str, str],
    dataset: dict[str, Any],
    broker: redis.Redis,
    hyper: dict[str, Any],
    field: str,
) -> None:
    r = submit(client, auth, dataset["id"], hyperparameters=hyper)
    err = assert_error(r, 422, "invalid_input")
    assert ["body", "hyperparameters", field] in [e["loc"] for e in err["details"]], err
    assert job_count() == 0
    assert broker.llen("train") == 0


def test_unknown_top_level_field(
    client: TestClient, auth: dict[str, str], dataset: dict[str, Any]
) -> None:
    r = submit(client, auth, dataset["id"], priority="high")
    assert_error(r, 422, "invalid_input")
    assert job_count() == 0


def test_missing_and_unknown_dataset(client: TestClient, auth: dict[str, str]) -> None:
    r = client.post(
        "/v1/jobs", headers=auth, json={"base_model": BASE, "strategy": {"name": "full"}}
    )
    err = assert_error(r, 422, "invalid_input")
    assert ["body", "dataset_id"] in [e["loc"] for e in err["details"]]
    r = submit(client, auth, "ds_doesnotexist")
    assert assert_error(r, 404, "not_found")["details"]["field"] == "dataset_id"


def test_unlabeled_dataset_with_full(
    client: TestClient, auth: dict[str, str], broker: redis.Redis
) -> None:
    texts = "\n".join(f"in-domain sentence number {i}" for i in range(20))
    r = upload(client, auth, f"text\n{texts}\n".encode(), task="unlabeled-text")
    assert r.status_code == 201, r.text
    unlabeled = r.json()
    assert unlabeled["task"] == "unlabeled-text"
    r = submit(client, auth, unlabeled["id"])
    err = assert_error(r, 422, "invalid_input")
    assert err["details"]["field"] == "dataset_id"
    assert job_count() == 0
    assert broker.llen("train") == 0


def test_validation_dataset_checks(
    client: TestClient, auth: dict[str, str], dataset: dict[str, Any]
) -> None:
    pairs = "\n".join(f'"left {i}","right {i}",{"yes" if i % 2 else "no"}' for i in range(12))
    other = upload(
        client,
        auth,
        f"text,text_pair,label\n{pairs}\n".encode(),
        task="text-pair-classification",
    ).json()
    assert other["task"] == "text-pair-classification"
    r = submit(client, auth, dataset["id"], validation_dataset_id=other["id"])
    err = assert_error(r, 422, "invalid_input")
    assert err["details"]["field"] == "validation_dataset_id"

    # same task but labels the training data lacks
    alien = upload(
        client, auth, csv_bytes([*sample_rows(3), ("a recipe for bread", "cooking")])
    ).json()
    r = submit(client, auth, dataset["id"], validation_dataset_id=alien["id"])
    err = assert_error(r, 422, "invalid_input")
    assert err["details"]["field"] == "validation_dataset_id"
    assert err["details"]["labels"] == ["cooking"]

    # a good one
    # texts the training set lacks: a copy of training rows would be audited as leakage
    held_out = [(f"{text}, held out", label) for text, label in sample_rows(2)]
    good = upload(client, auth, csv_bytes(held_out)).json()
    r = submit(client, auth, dataset["id"], validation_dataset_id=good["id"])
    assert r.status_code == 201, r.text
    assert r.json()["validation_dataset_id"] == good["id"]
    assert job_count() == 1


def test_aux_dataset_checks(
    client: TestClient, auth: dict[str, str], dataset: dict[str, Any]
) -> None:
    r = submit(client, auth, dataset["id"], strategy={"name": "dann"})
    assert_error(r, 422, "invalid_input")  # target_dataset_id is required
    r = submit(
        client, auth, dataset["id"], strategy={"name": "dann", "target_dataset_id": dataset["id"]}
    )
    err = assert_error(r, 422, "invalid_input")
    assert err["details"]["field"] == "strategy.target_dataset_id"
    assert job_count() == 0


def test_idempotency_key(
    client: TestClient, auth: dict[str, str], dataset: dict[str, Any], broker: redis.Redis
) -> None:
    key = {**auth, "Idempotency-Key": "retry-1"}
    first = submit(client, key, dataset["id"], hyperparameters={"epochs": 2})
    assert first.status_code == 201, first.text
    again = submit(client, key, dataset["id"], hyperparameters={"epochs": 2})
    assert again.status_code == 200, again.text
    assert again.json()["id"] == first.json()["id"]
    assert job_count() == 1
    assert broker.llen("train") == 1  # the replay sent nothing

    other = submit(client, key, dataset["id"], hyperparameters={"epochs": 3})
    err = assert_error(other, 409)
    assert err["details"]["job_id"] == first.json()["id"]
    assert job_count() == 1

    # the key is per tenant: another tenant may use the same one
    assert submit(client, auth, dataset["id"]).status_code == 201
    assert job_count() == 2


def test_idempotency_key_other_tenant(
    client: TestClient, make_key: Callable[[str], dict[str, str]]
) -> None:
    a, b = make_key("a"), make_key("b")
    ds_a = upload(client, a, csv_bytes(sample_rows())).json()
    ds_b = upload(client, b, csv_bytes(sample_rows())).json()
    ra = submit(client, {**a, "Idempotency-Key": "same"}, ds_a["id"])
    rb = submit(client, {**b, "Idempotency-Key": "same"}, ds_b["id"])
    assert ra.status_code == rb.status_code == 201, (ra.text, rb.text)
    assert ra.json()["id"] != rb.json()["id"]


def test_cancel_queued(client: TestClient, auth: dict[str, str], dataset: dict[str, Any]) -> None:
    job = submit(client, auth, dataset["id"]).json()
    r = client.post(f"/v1/jobs/{job['id']}/cancel", headers=auth)
    assert r.status_code == 200, r.text
    cancelled = r.json()
    assert cancelled["status"] == "cancelled"
    assert cancelled["finished_at"] is not None
    assert cancelled["started_at"] is None

    kinds = [
        e["kind"] for e in client.get(f"/v1/jobs/{job['id']}/events", headers=auth).json()["data"]
    ]
    assert kinds == ["queued", "auto", "cancelled"]

    r = client.post(f"/v1/jobs/{job['id']}/cancel", headers=auth)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "cancelled"
    assert r.json()["finished_at"] == cancelled["finished_at"]
    kinds = [
        e["kind"] for e in client.get(f"/v1/jobs/{job['id']}/events", headers=auth).json()["data"]
    ]
    assert kinds == ["queued", "auto", "cancelled"]  # no second event
    assert client.get(f"/v1/jobs/{job['id']}", headers=auth).json()["status"] == "cancelled"


def test_cancel_finished_job_is_a_conflict(client: TestClient, auth: dict[str, str]) -> None:
    from tests.api.test_auth_tenants import insert_model

    model_id = insert_model("acme")
    job_id = client.get(f"/v1/models/{model_id}", headers=auth).json()["job_id"]
    r = client.post(f"/v1/jobs/{job_id}/cancel", headers=auth)
    assert_error(r, 409, "job_finished")
    assert client.get(f"/v1/jobs/{job_id}", headers=auth).json()["status"] == "succeeded"


def test_unknown_job(client: TestClient, auth: dict[str, str]) -> None:
    for method, path in (
        ("GET", "/v1/jobs/job_nope"),
        ("POST", "/v1/jobs/job_nope/cancel"),
        ("GET", "/v1/jobs/job_nope/events"),
        ("GET", "/v1/jobs/job_nope/metrics"),
    ):
        assert_error(client.request(method, path, headers=auth), 404, "not_found")


def test_events_paging(client: TestClient, auth: dict[str, str], dataset: dict[str, Any]) -> None:
    from app.db import session_scope
    from app.jobs.lifecycle import add_event

    given = {"epochs": 2, "batch_size": 4, "learning_rate": 1e-4}  # no `auto` event
    job = submit(client, auth, dataset["id"], hyperparameters=given).json()
    with session_scope() as s:
        for i in range(5):
            add_event(s, job["id"], "note", f"event {i}", {"i": i})

    r = client.get(f"/v1/jobs/{job['id']}/events", headers=auth, params={"limit": 2})
    assert r.status_code == 200, r.text
    page = r.json()
    assert [e["kind"] for e in page["data"]] == ["queued", "note"]
    collected = page["data"]
    pages = 1
    while page["next_cursor"] is not None:
        r = client.get(
            f"/v1/jobs/{job['id']}/events",
            headers=auth,
            params={"limit": 2, "after": page["next_cursor"]},
        )
        assert r.status_code == 200, r.text
        page = r.json()
        collected += page["data"]
        pages += 1
        assert pages < 10
    assert pages == 3
    ids = [e["id"] for e in collected]
    assert ids == sorted(ids) and len(set(ids)) == 6
    assert [e["data"] for e in collected[1:]] == [{"i": i} for i in range(5)]

    after_last = client.get(
        f"/v1/jobs/{job['id']}/events", headers=auth, params={"after": ids[-1]}
    ).json()
    assert after_last == {"data": [], "next_cursor": None}
    after_third = client.get(
        f"/v1/jobs/{job['id']}/events", headers=auth, params={"after": ids[2]}
    ).json()
    assert [e["id"] for e in after_third["data"]] == ids[3:]


def test_metrics_empty(client: TestClient, auth: dict[str, str], dataset: dict[str, Any]) -> None:
    job = submit(client, auth, dataset["id"]).json()
    r = client.get(f"/v1/jobs/{job['id']}/metrics", headers=auth)
    assert r.status_code == 200, r.text
    assert r.json() == {"job_id": job["id"], "series": []}


def test_list_and_filter(client: TestClient, auth: dict[str, str], dataset: dict[str, Any]) -> None:
    ids = [submit(client, auth, dataset["id"]).json()["id"] for _ in range(3)]
    client.post(f"/v1/jobs/{ids[0]}/cancel", headers=auth)

    r = client.get("/v1/jobs", headers=auth, params={"status": "queued"})
    assert r.status_code == 200, r.text
    assert {j["id"] for j in r.json()["data"]} == set(ids[1:])
    assert all(j["status"] == "queued" for j in r.json()["data"])

    r = client.get("/v1/jobs", headers=auth, params={"status": "cancelled"})
    assert [j["id"] for j in r.json()["data"]] == [ids[0]]
    assert client.get("/v1/jobs", headers=auth, params={"status": "running"}).json()["data"] == []

    # paging over all three, newest first
    first = client.get("/v1/jobs", headers=auth, params={"limit": 2}).json()
    assert len(first["data"]) == 2 and first["next_cursor"]
    rest = client.get(
        "/v1/jobs", headers=auth, params={"limit": 2, "cursor": first["next_cursor"]}
    ).json()
    assert rest["next_cursor"] is None
    listed = [j["id"] for j in first["data"] + rest["data"]]
    assert sorted(listed) == sorted(ids)
    created = [j["created_at"] for j in first["data"] + rest["data"]]
    assert created == sorted(created, reverse=True)


def test_deleted_dataset_cannot_be_trained(
    client: TestClient, auth: dict[str, str], dataset: dict[str, Any]
) -> None:
    assert client.delete(f"/v1/datasets/{dataset['id']}", headers=auth).status_code == 204
    r = submit(client, auth, dataset["id"])
    assert_error(r, 404, "not_found")
    assert job_count() == 0


def test_status_filter_accepts_every_status(client: TestClient, auth: dict[str, str]) -> None:
    from app.jobs.orm import JOB_STATUSES

    for status in JOB_STATUSES:
        r = client.get("/v1/jobs", headers=auth, params={"status": status})
        assert r.status_code == 200, (status, r.text)
    assert_error(client.get("/v1/jobs", headers=auth, params={"status": "done"}), 422)


def test_base_models(client: TestClient, auth: dict[str, str]) -> None:
    r = client.get("/v1/base-models", headers=auth)
    assert r.status_code == 200, r.text
    models = {m["id"]: m for m in r.json()["data"]}
    assert BASE in models
    mini = models[BASE]
    assert mini["task_families"] == ["text"]
    assert mini["model_type"] == "bert"
    assert 20_000_000 < mini["parameter_count"] < 25_000_000
    assert mini["pooling"] == "mean"
