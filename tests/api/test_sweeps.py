"""Sweeps over HTTP: candidates created together (or not at all), idempotency, cancel, and the
leaderboard and promotion on job rows put into finished states directly in the database."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient

from tests.api.conftest import csv_bytes, sample_rows, upload
from tests.api.test_hostile_uploads import assert_error
from tests.api.test_jobs import BASE, job_count, train_messages


@pytest.fixture
def dataset(client: TestClient, auth: dict[str, str]) -> dict[str, Any]:
    r = upload(client, auth, csv_bytes(sample_rows()))
    assert r.status_code == 201, r.text
    return dict(r.json())


def create(client: TestClient, auth: dict[str, str], dataset_id: str, **body: Any) -> Any:
    payload = {
        "base_model": BASE,
        "dataset_id": dataset_id,
        "strategies": [{"name": "full"}, {"name": "linear_probe"}],
        **body,
    }
    return client.post("/v1/sweeps", headers=auth, json=payload)


def sweep_count() -> int:
    from sqlalchemy import func, select

    from app.db import session_scope
    from app.sweeps.orm import Sweep

    with session_scope() as s:
        return int(s.scalar(select(func.count()).select_from(Sweep)) or 0)


def jobs_of(sweep_id: str) -> list[dict[str, Any]]:
    from sqlalchemy import select

    from app.db import session_scope
    from app.jobs.orm import Job
    from app.jobs.schemas import JobRead

    with session_scope() as s:
        rows = s.scalars(select(Job).where(Job.sweep_id == sweep_id).order_by(Job.created_at))
        return [JobRead.from_row(j).model_dump(mode="json") for j in rows]


def finish(
    job_id: str,
    status: str,
    *,
    selected: dict[str, float] | None = None,
    metrics: dict[str, Any] | None = None,
    wall: float = 10.0,
    size: int = 1000,
    error_code: str | None = None,
) -> str | None:
    """Put a job into a finished state as a worker would leave it; a succeeded job gets a
    Model row. Returns the model id."""
    from app.db import session_scope, utcnow
    from app.jobs.orm import Job
    from app.models.orm import Model

    with session_scope() as s:
        job = s.get(Job, job_id)
        assert job is not None
        now = utcnow()
        job.status, job.started_at, job.finished_at = status, now - timedelta(seconds=wall), now
        job.metrics = metrics or {}
        job.error_code = error_code
        job.error_message = "it broke" if error_code else None
        if selected is not None:
            job.selection = {
                "metric": "val_macro_f1",
                "mode": "max",
                "selected_epoch": 2.0,
                "selected_step": 8,
                "selected": selected,
                "last_epoch": 3.0,
                "last_step": 12,
                "last": {k: v / 2 for k, v in selected.items()},
                "stopped_early": False,
                "evaluations": 3,
            }
        if status != "succeeded" or job.model_id:
            return job.model_id
        model = Model(
            tenant_id=job.tenant_id,
            job_id=job.id,
            base_model=job.base_model,
            task=job.task,
            strategy=job.strategy["name"],
            labels=["politics", "sport"],
            metrics=job.metrics,
            storage_path=f"models/{job.id}",
            size_bytes=size,
        )
        s.add(model)
        s.flush()
        job.model_id = model.id
        return model.id


def test_create(
    client: TestClient, auth: dict[str, str], dataset: dict[str, Any], broker: redis.Redis
) -> None:
    r = create(client, auth, dataset["id"], learning_rates=[1e-3, 1e-4], metric="val_accuracy")
    assert r.status_code == 201, r.text
    sweep = r.json()
    assert sweep["id"].startswith("swp_")
    assert sweep["status"] == "running"
    assert (sweep["metric"], sweep["mode"]) == ("val_accuracy", "max")
    assert sweep["dataset_id"] == dataset["id"] and sweep["base_model"] == BASE
    assert sweep["winner_job_id"] is None and sweep["model_id"] is None
    assert sweep["finished_at"] is None

    jobs = jobs_of(sweep["id"])
    assert [(j["strategy"]["name"], j["hyperparameters"]["learning_rate"]) for j in jobs] == [
        ("full", 1e-3),
        ("full", 1e-4),
        ("linear_probe", 1e-3),
        ("linear_probe", 1e-4),
    ]
    for job in jobs:
        assert job["status"] == "queued" and job["sweep_id"] == sweep["id"]
        assert job["hyperparameters"]["early_stopping"]["metric"] == "val_accuracy"
        # one split for all: same dataset, seed and validation share
        assert job["dataset_id"] == dataset["id"]
        assert job["hyperparameters"]["seed"] == 0
        assert job["hyperparameters"]["validation_fraction"] == 0.1
    sent = [json.loads(base64.b64decode(m["body"]))[0] for m in train_messages(broker)]
    assert sorted(sent) == sorted([j["id"]] for j in jobs)  # one train message per candidate

    board = sweep["leaderboard"]
    assert [e["job_id"] for e in board] == [j["id"] for j in jobs]  # creation order
    assert [e["learning_rate"] for e in board] == [1e-3, 1e-4, 1e-3, 1e-4]
    assert all(e["rank"] is None and e["status"] == "queued" for e in board)
    assert all(e["value"] is None and e["metrics"] == {} for e in board)
    assert client.get(f"/v1/sweeps/{sweep['id']}", headers=auth).json() == sweep
    assert client.get(f"/v1/jobs/{jobs[0]['id']}", headers=auth).json()["sweep_id"] == sweep["id"]


def test_defaults_and_explicit_early_stopping(
    client: TestClient, auth: dict[str, str], dataset: dict[str, Any]
) -> None:
    sweep = create(client, auth, dataset["id"]).json()
    assert (sweep["metric"], sweep["mode"]) == ("val_macro_f1", "max")
    board = sweep["leaderboard"]
    # no learning_rates: one candidate per strategy at its auto rate (small data)
    assert [(e["strategy"], e["learning_rate"]) for e in board] == [
        ("full", 2e-4),
        ("linear_probe", 1e-2),
    ]
    jobs = jobs_of(sweep["id"])
    assert [j["hyperparameters"]["learning_rate"] for j in jobs] == [2e-4, 1e-2]
    assert {j["hyperparameters"]["early_stopping"]["metric"] for j in jobs} == {"val_macro_f1"}

    # a shared learning rate, and early stopping given explicitly: kept as given
    r = create(
        client,
        auth,
        dataset["id"],
        metric="val_loss",
        hyperparameters={"learning_rate": 3e-4, "early_stopping": {"patience": 2}},
    )
    assert r.status_code == 201, r.text
    assert r.json()["mode"] == "min"
    assert [e["learning_rate"] for e in r.json()["leaderboard"]] == [3e-4, 3e-4]
    for job in jobs_of(r.json()["id"]):
        assert job["hyperparameters"]["early_stopping"]["metric"] == "val_loss"
        assert job["hyperparameters"]["early_stopping"]["patience"] == 2
    r = create(
        client,
        auth,
        dataset["id"],
        metric="val_accuracy",
        hyperparameters={"early_stopping": {"metric": "val_macro_f1"}},
    )
    assert r.status_code == 201, r.text
    assert {j["hyperparameters"]["early_stopping"]["metric"] for j in jobs_of(r.json()["id"])} == {
        "val_macro_f1"
    }


@pytest.mark.parametrize(
    "body,loc",
    [
        ({"learning_rates": [1e-3], "hyperparameters": {"learning_rate": 1e-3}}, ["body"]),
        (
            {
                "strategies": [{"name": n} for n in ("full", "partial", "lora", "linear_probe")]
                + [{"name": "gradual_unfreeze"}],
                "learning_rates": [1e-1, 1e-2, 1e-3, 1e-4, 1e-5],
            },
            ["body"],
        ),
        ({"strategies": [{"name": "nope"}]}, ["body", "strategies", 0]),
        ({"strategies": []}, ["body", "strategies"]),
        ({"strategies": [{"name": "full"}] * 9}, ["body", "strategies"]),
        ({"learning_rates": []}, ["body", "learning_rates"]),
        ({"learning_rates": [1e-3] * 6}, ["body", "learning_rates"]),
        ({"learning_rates": [0]}, ["body", "learning_rates", 0]),
        ({"learning_rates": [1.5]}, ["body", "learning_rates", 0]),
        ({"metric": "accuracy"}, ["body", "metric"]),
        ({"strategy": {"name": "full"}}, ["body", "strategy"]),
    ],
    ids=[
        "both-learning-rates",
        "25-candidates",
        "unknown-strategy",
        "no-strategies",
        "9-strategies",
        "no-learning-rates",
        "6-learning-rates",
        "zero-learning-rate",
        "learning-rate-above-1",
        "unknown-metric",
        "unknown-field",
    ],
)
def test_invalid_request(
    client: TestClient,
    auth: dict[str, str],
    dataset: dict[str, Any],
    broker: redis.Redis,
    body: dict[str, Any],
    loc: list[Any],
) -> None:
    err = assert_error(create(client, auth, dataset["id"], **body), 422, "invalid_input")
    assert any(e["loc"][: len(loc)] == loc for e in err["details"]), err
    assert sweep_count() == job_count() == broker.llen("train") == 0


def test_invalid_candidates_create_nothing(
    client: TestClient,
    auth: dict[str, str],
    make_key: Callable[[str], dict[str, str]],
    dataset: dict[str, Any],
    broker: redis.Redis,
) -> None:
    def refused(status: int, code: str, **body: Any) -> dict[str, Any]:
        err = assert_error(create(client, auth, dataset["id"], **body), status, code)
        assert sweep_count() == job_count() == broker.llen("train") == 0
        return err["details"]

    # a metric that the dataset's task does not have
    details = refused(422, "invalid_input", metric="val_subset_accuracy")
    assert details["field"] == "metric"
    # ... also when early stopping names it
    details = refused(
        422,
        "invalid_input",
        hyperparameters={"early_stopping": {"metric": "val_subset_accuracy"}},
    )
    assert details["field"] == "hyperparameters.early_stopping.metric"

    # the third candidate (dann at the first rate) names a labeled dataset as its target
    details = refused(
        422,
        "invalid_input",
        strategies=[{"name": "full"}, {"name": "dann", "target_dataset_id": dataset["id"]}],
        learning_rates=[1e-3, 1e-4],
    )
    assert details == {"field": "strategy.target_dataset_id", "candidate": 2}

    # another tenant's datasets do not exist for this one
    theirs = upload(client, make_key("other"), csv_bytes(sample_rows())).json()
    details = refused(404, "not_found", validation_dataset_id=theirs["id"])
    assert details["field"] == "validation_dataset_id"
    err = assert_error(create(client, auth, theirs["id"]), 404, "not_found")
    assert err["details"] == {"field": "dataset_id", "candidate": 0}
    details = refused(422, "invalid_input", base_model="no-such-model")
    assert details["field"] == "base_model"
    assert sweep_count() == job_count() == 0


def test_metric_for_multilabel(
    client: TestClient, auth: dict[str, str], broker: redis.Redis
) -> None:
    rows = [(f"story number {i}", "sport|news" if i % 2 else "politics") for i in range(12)]
    ds = upload(client, auth, csv_bytes(rows), task="text-multilabel")
    assert ds.status_code == 201, ds.text
    strategies = [{"name": "linear_probe"}]
    r = create(client, auth, ds.json()["id"], strategies=strategies, metric="val_accuracy")
    assert assert_error(r, 422, "invalid_input")["details"]["field"] == "metric"
    assert sweep_count() == job_count() == 0
    r = create(client, auth, ds.json()["id"], strategies=strategies, metric="val_subset_accuracy")
    assert r.status_code == 201, r.text
    assert r.json()["mode"] == "max"


def test_audit_failure_creates_nothing(
    client: TestClient, auth: dict[str, str], dataset: dict[str, Any], broker: redis.Redis
) -> None:
    # validation rows that are all training rows: the pre-flight audit refuses the job, after
    # the sweep row was written in the same transaction
    leaky = upload(client, auth, csv_bytes(sample_rows(2))).json()
    r = create(client, auth, dataset["id"], validation_dataset_id=leaky["id"])
    err = assert_error(r, 422, "audit_failed")
    assert err["details"]["candidate"] == 0 and err["details"]["findings"]
    assert sweep_count() == job_count() == broker.llen("train") == 0


def test_queue_down_creates_nothing(
    down_client: TestClient, make_key: Callable[[str], dict[str, str]]
) -> None:
    auth = make_key("acme")
    ds = upload(down_client, auth, csv_bytes(sample_rows())).json()
    # the sweep row is written before the first candidate finds the queue down: rolled back
    assert_error(create(down_client, auth, ds["id"]), 503, "queue_unavailable")
    assert sweep_count() == job_count() == 0


def test_idempotency_key(
    client: TestClient,
    auth: dict[str, str],
    make_key: Callable[[str], dict[str, str]],
    dataset: dict[str, Any],
    broker: redis.Redis,
) -> None:
    key = {**auth, "Idempotency-Key": "sweep-1"}
    first = create(client, key, dataset["id"], learning_rates=[1e-3, 1e-4])
    assert first.status_code == 201, first.text
    again = create(client, key, dataset["id"], learning_rates=[1e-3, 1e-4])
    assert again.status_code == 200, again.text
    assert again.json() == first.json()
    assert sweep_count() == 1 and job_count() == 4
    assert broker.llen("train") == 4  # the replay sent nothing

    other = create(client, key, dataset["id"], learning_rates=[1e-3])
    err = assert_error(other, 409, "idempotency_key_reused")
    assert err["details"] == {"sweep_id": first.json()["id"]}
    # the same values, but early stopping given: candidates would select by val_loss
    explicit = create(
        client,
        key,
        dataset["id"],
        learning_rates=[1e-3, 1e-4],
        hyperparameters={"early_stopping": {}},
    )
    assert_error(explicit, 409, "idempotency_key_reused")
    assert sweep_count() == 1 and job_count() == 4

    # the key is per tenant
    b = make_key("b")
    ds_b = upload(client, b, csv_bytes(sample_rows())).json()
    r = create(client, {**b, "Idempotency-Key": "sweep-1"}, ds_b["id"])
    assert r.status_code == 201, r.text
    assert sweep_count() == 2


def test_cancel_cascades(client: TestClient, auth: dict[str, str], dataset: dict[str, Any]) -> None:
    from app.db import session_scope
    from app.jobs.orm import Job

    sweep = create(client, auth, dataset["id"], learning_rates=[1e-3, 1e-4]).json()
    ids = [e["job_id"] for e in sweep["leaderboard"]]
    with session_scope() as s:  # one candidate is being trained, one has finished
        running = s.get(Job, ids[1])
        assert running is not None
        running.status = "running"
    done_model = finish(ids[3], "succeeded", selected={"val_macro_f1": 0.7})

    r = client.post(f"/v1/sweeps/{sweep['id']}/cancel", headers=auth)
    assert r.status_code == 200, r.text
    cancelled = r.json()
    assert cancelled["status"] == "cancelled" and cancelled["finished_at"] is not None
    assert cancelled["winner_job_id"] is None and cancelled["model_id"] is None
    jobs = {j["id"]: j for j in jobs_of(sweep["id"])}
    assert [jobs[i]["status"] for i in ids] == ["cancelled", "running", "cancelled", "succeeded"]
    assert jobs[ids[1]]["cancel_requested"] is True  # the loop stops at the next step
    assert jobs[ids[3]]["model_id"] == done_model

    assert_error(
        client.post(f"/v1/sweeps/{sweep['id']}/cancel", headers=auth), 409, "sweep_finished"
    )

    # the running candidate ends (even successfully): a cancelled sweep promotes nothing
    finish(ids[1], "succeeded", selected={"val_macro_f1": 0.9})
    after = client.get(f"/v1/sweeps/{sweep['id']}", headers=auth).json()
    assert after["status"] == "cancelled" and after["model_id"] is None
    assert after["finished_at"] == cancelled["finished_at"]
    assert [e["job_id"] for e in after["leaderboard"]][:2] == [ids[1], ids[3]]


def test_cancel_after_all_finished_is_a_conflict(
    client: TestClient, auth: dict[str, str], dataset: dict[str, Any]
) -> None:
    sweep = create(client, auth, dataset["id"]).json()
    ids = [e["job_id"] for e in sweep["leaderboard"]]
    model = finish(ids[0], "succeeded", selected={"val_macro_f1": 0.5})
    finish(ids[1], "failed", error_code="training_error")
    # not settled yet (no one read it): cancel settles it first, and it has finished
    err = assert_error(
        client.post(f"/v1/sweeps/{sweep['id']}/cancel", headers=auth), 409, "sweep_finished"
    )
    assert err["details"] == {"status": "succeeded"}
    got = client.get(f"/v1/sweeps/{sweep['id']}", headers=auth).json()
    assert (got["status"], got["model_id"]) == ("succeeded", model)


def test_leaderboard_and_promotion(
    client: TestClient, auth: dict[str, str], dataset: dict[str, Any]
) -> None:
    from app.db import session_scope
    from app.sweeps.service import settle_sweep

    strategies = [{"name": "full"}, {"name": "linear_probe"}, {"name": "lora"}]
    sweep = create(client, auth, dataset["id"], strategies=strategies, learning_rates=[1e-3, 1e-4])
    assert sweep.status_code == 201, sweep.text
    sweep_id = sweep.json()["id"]
    ids = [e["job_id"] for e in sweep.json()["leaderboard"]]
    # 0: 0.8 in 10 s; 1: the best, 0.9, selected at epoch 2 though its last epoch scored less;
    # 2: 0.8 in 5 s (beats 0 on the tie); 3: failed; 4: no selection yet: its metrics count;
    # 5: still queued
    m0 = finish(ids[0], "succeeded", selected={"val_macro_f1": 0.8}, wall=10, size=500)
    m1 = finish(
        ids[1],
        "succeeded",
        selected={"val_macro_f1": 0.9, "val_loss": 0.3},
        metrics={"val_macro_f1": 0.45, "test_macro_f1": 0.85, "trainable_parameters": 1234},
        wall=20,
        size=300,
    )
    m2 = finish(ids[2], "succeeded", selected={"val_macro_f1": 0.8}, wall=5, size=700)
    finish(ids[3], "failed", error_code="training_error")
    m4 = finish(ids[4], "succeeded", metrics={"val_macro_f1": 0.6, "val_loss": 0.9}, wall=1)

    got = client.get(f"/v1/sweeps/{sweep_id}", headers=auth).json()
    assert got["status"] == "running" and got["model_id"] is None  # one is still queued
    board = got["leaderboard"]
    assert [e["job_id"] for e in board] == [ids[1], ids[2], ids[0], ids[4], ids[5], ids[3]]
    assert [e["rank"] for e in board] == [1, 2, 3, 4, None, None]
    assert [e["value"] for e in board] == [0.9, 0.8, 0.8, 0.6, None, None]
    best = board[0]
    assert best == {
        "rank": 1,
        "job_id": ids[1],
        "strategy": "full",
        "learning_rate": 1e-4,
        "status": "succeeded",
        "value": 0.9,
        "selected_epoch": 2.0,
        "metrics": {"val_macro_f1": 0.9, "val_loss": 0.3},
        "test_metrics": {"test_macro_f1": 0.85},
        "wall_seconds": pytest.approx(20.0),
        "trainable_parameters": 1234,
        "artifact_bytes": 300,
        "model_id": m1,
        "error_code": None,
    }
    assert (board[1]["artifact_bytes"], board[2]["artifact_bytes"]) == (700, 500)
    assert (board[1]["model_id"], board[2]["model_id"], board[3]["model_id"]) == (m2, m0, m4)
    assert board[3]["metrics"] == {"val_macro_f1": 0.6, "val_loss": 0.9}
    assert board[3]["selected_epoch"] is None and board[3]["test_metrics"] is None
    assert board[5]["error_code"] == "training_error" and board[5]["status"] == "failed"

    finish(ids[5], "cancelled")
    got = client.get(f"/v1/sweeps/{sweep_id}", headers=auth).json()
    assert got["status"] == "succeeded"
    assert (got["winner_job_id"], got["model_id"]) == (ids[1], m1)
    assert got["finished_at"] is not None
    order = [ids[1], ids[2], ids[0], ids[4], ids[3], ids[5]]
    assert [e["job_id"] for e in got["leaderboard"]] == order

    # settling again changes nothing, even if the rows would now rank another candidate first
    finish(ids[2], "succeeded", selected={"val_macro_f1": 0.99})
    with session_scope() as s:
        settled = settle_sweep(s, sweep_id)
        assert settled is not None
        assert (settled.status, settled.winner_job_id, settled.model_id) == (
            "succeeded",
            ids[1],
            m1,
        )
        assert settle_sweep(s, "swp_nope") is None
    again = client.get(f"/v1/sweeps/{sweep_id}", headers=auth).json()
    assert (again["winner_job_id"], again["finished_at"]) == (ids[1], got["finished_at"])
    assert again["leaderboard"][0]["job_id"] == ids[2]  # the board is live; the promotion is not


def test_lower_is_better_for_loss(
    client: TestClient, auth: dict[str, str], dataset: dict[str, Any]
) -> None:
    sweep = create(client, auth, dataset["id"], metric="val_loss").json()
    ids = [e["job_id"] for e in sweep["leaderboard"]]
    finish(ids[0], "succeeded", selected={"val_loss": 0.7, "val_macro_f1": 0.9})
    m1 = finish(ids[1], "succeeded", selected={"val_loss": 0.2, "val_macro_f1": 0.5})
    got = client.get(f"/v1/sweeps/{sweep['id']}", headers=auth).json()
    assert [e["job_id"] for e in got["leaderboard"]] == [ids[1], ids[0]]
    assert (got["status"], got["model_id"]) == ("succeeded", m1)


def test_no_candidate_succeeded(
    client: TestClient, auth: dict[str, str], dataset: dict[str, Any]
) -> None:
    sweep = create(client, auth, dataset["id"]).json()
    ids = [e["job_id"] for e in sweep["leaderboard"]]
    finish(ids[0], "failed", error_code="worker_lost")
    finish(ids[1], "cancelled")
    got = client.get(f"/v1/sweeps/{sweep['id']}", headers=auth).json()
    assert got["status"] == "failed" and got["finished_at"] is not None
    assert got["winner_job_id"] is None and got["model_id"] is None
    assert [e["rank"] for e in got["leaderboard"]] == [None, None]


def test_two_settlers_promote_once(
    client: TestClient, auth: dict[str, str], dataset: dict[str, Any]
) -> None:
    """Two settlers at once: the second one's conditional UPDATE waits for the first one's
    transaction, then matches no row; the first one's promotion stands."""
    from app.db import get_sessionmaker
    from app.sweeps.orm import Sweep
    from app.sweeps.service import settle_sweep

    sweep = create(client, auth, dataset["id"]).json()
    ids = [e["job_id"] for e in sweep["leaderboard"]]
    model = finish(ids[0], "succeeded", selected={"val_macro_f1": 0.8})
    finish(ids[1], "failed", error_code="training_error")

    first, second = get_sessionmaker()(), get_sessionmaker()()
    seen_by_second: list[Sweep | None] = []
    try:
        settled = settle_sweep(first, sweep["id"])  # holds the row (uncommitted UPDATE)
        assert settled is not None and settled.status == "succeeded"
        other = threading.Thread(
            target=lambda: seen_by_second.append(settle_sweep(second, sweep["id"]))
        )
        other.start()
        other.join(0.5)
        assert other.is_alive()  # its UPDATE waits for the first transaction
        first.commit()
        other.join(10)
        assert not other.is_alive()
        second.commit()
        assert seen_by_second[0] is not None
        assert seen_by_second[0].finished_at == settled.finished_at
        assert seen_by_second[0].model_id == model
    finally:
        first.close()
        second.close()


def test_tenant_isolation_and_list(
    client: TestClient,
    auth: dict[str, str],
    make_key: Callable[[str], dict[str, str]],
    dataset: dict[str, Any],
) -> None:
    ids = [create(client, auth, dataset["id"]).json()["id"] for _ in range(3)]
    other = make_key("other")
    for method, path in (
        ("GET", f"/v1/sweeps/{ids[0]}"),
        ("POST", f"/v1/sweeps/{ids[0]}/cancel"),
        ("GET", "/v1/sweeps/swp_nope"),
        ("POST", "/v1/sweeps/swp_nope/cancel"),
    ):
        assert_error(client.request(method, path, headers=other), 404, "not_found")
    assert client.get("/v1/sweeps", headers=other).json() == {"data": [], "next_cursor": None}
    assert client.get(f"/v1/sweeps/{ids[0]}", headers=auth).json()["status"] == "running"

    client.post(f"/v1/sweeps/{ids[0]}/cancel", headers=auth)
    first = client.get("/v1/sweeps", headers=auth, params={"limit": 2}).json()
    assert len(first["data"]) == 2 and first["next_cursor"]
    rest = client.get(
        "/v1/sweeps", headers=auth, params={"limit": 2, "cursor": first["next_cursor"]}
    ).json()
    assert rest["next_cursor"] is None
    listed = first["data"] + rest["data"]
    assert sorted(s["id"] for s in listed) == sorted(ids)
    assert all(len(s["leaderboard"]) == 2 for s in listed)
    r = client.get("/v1/sweeps", headers=auth, params={"status": "cancelled"})
    assert [s["id"] for s in r.json()["data"]] == [ids[0]]
    assert_error(client.get("/v1/sweeps", headers=auth, params={"status": "done"}), 422)


def test_list_settles(client: TestClient, auth: dict[str, str], dataset: dict[str, Any]) -> None:
    sweep = create(client, auth, dataset["id"]).json()
    ids = [e["job_id"] for e in sweep["leaderboard"]]
    finish(ids[0], "succeeded", selected={"val_macro_f1": 0.4})
    model = finish(ids[1], "succeeded", selected={"val_macro_f1": 0.6})
    (listed,) = client.get("/v1/sweeps", headers=auth).json()["data"]
    assert (listed["status"], listed["model_id"]) == ("succeeded", model)
