"""API keys (missing, wrong, revoked) on every /v1 route, and tenant isolation on every route."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import csv_bytes, sample_rows, upload
from tests.api.test_hostile_uploads import assert_error
from tests.conftest import reset_caches

JOB_BODY = {"base_model": "all-MiniLM-L6-v2", "strategy": {"name": "full"}}
SWEEP_BODY = {
    "base_model": "all-MiniLM-L6-v2",
    "strategies": [{"name": "linear_probe"}, {"name": "full"}],
}


def insert_jobs(
    statuses: list[str], tenant: str = "acme", *, labels: tuple[str, ...] = ("politics", "sport")
) -> list[str]:
    """Job rows in the given states (with the dataset their foreign key needs), straight
    through the ORM."""
    from app.datasets.orm import Dataset
    from app.db import session_scope
    from app.jobs.orm import Job
    from app.tenants.service import get_or_create_tenant

    with session_scope() as s:
        t = get_or_create_tenant(s, name=tenant)
        ds = Dataset(
            tenant_id=t.id,
            name="seed",
            task="text-classification",
            format="csv",
            filename="seed.csv",
            size_bytes=1,
            sha256="0" * 64,
            num_rows=10,
            labels=list(labels),
            storage_path="datasets/none/data.parquet",
        )
        s.add(ds)
        s.flush()
        jobs = [
            Job(
                tenant_id=t.id,
                status=status,
                base_model="all-MiniLM-L6-v2",
                task="text-classification",
                dataset_id=ds.id,
                strategy={"name": "full"},
                hyperparameters={},
            )
            for status in statuses
        ]
        s.add_all(jobs)
        s.flush()
        return [j.id for j in jobs]


def insert_model(
    tenant: str = "acme",
    *,
    labels: tuple[str, ...] = ("politics", "sport"),
    task: str = "text-classification",
) -> str:
    """A Model row (with the dataset and job rows its foreign keys need), straight through the
    ORM: the API never makes one without a worker."""
    from app.db import session_scope
    from app.jobs.orm import Job
    from app.models.orm import Model

    [job_id] = insert_jobs(["succeeded"], tenant, labels=labels)
    with session_scope() as s:
        job = s.get(Job, job_id)
        assert job is not None
        model = Model(
            tenant_id=job.tenant_id,
            job_id=job.id,
            base_model="all-MiniLM-L6-v2",
            task=task,
            strategy="full",
            labels=list(labels),
            metrics={"accuracy": 0.9},
            storage_path="models/none",
            size_bytes=123,
        )
        s.add(model)
        s.flush()
        job.model_id = model.id
        return model.id


def _v1_routes() -> list[tuple[str, str]]:
    from app.main import create_app

    out = []
    for path, operations in create_app().openapi()["paths"].items():
        if not path.startswith("/v1"):
            continue
        for param in ("dataset_id", "job_id", "model_id", "sweep_id", "key_id", "webhook_id"):
            path = path.replace("{" + param + "}", "x_123")
        path = path.replace("{name}", "curves.png")
        out += [(method.upper(), path) for method in operations]
    return out


V1_ROUTES = _v1_routes()


def test_route_table_is_what_we_expect() -> None:
    # a new route must be added to the auth and isolation tests below
    assert sorted(V1_ROUTES) == sorted(
        [
            ("POST", "/v1/datasets"),
            ("GET", "/v1/datasets"),
            ("GET", "/v1/datasets/x_123"),
            ("GET", "/v1/datasets/x_123/preview"),
            ("GET", "/v1/datasets/x_123/labels"),
            ("DELETE", "/v1/datasets/x_123"),
            ("GET", "/v1/base-models"),
            ("POST", "/v1/jobs"),
            ("GET", "/v1/jobs"),
            ("GET", "/v1/jobs/x_123"),
            ("POST", "/v1/jobs/x_123/cancel"),
            ("GET", "/v1/jobs/x_123/events"),
            ("GET", "/v1/jobs/x_123/metrics"),
            ("GET", "/v1/jobs/x_123/report"),
            ("GET", "/v1/jobs/x_123/report/plots/curves.png"),
            ("POST", "/v1/sweeps"),
            ("GET", "/v1/sweeps"),
            ("GET", "/v1/sweeps/x_123"),
            ("POST", "/v1/sweeps/x_123/cancel"),
            ("GET", "/v1/models"),
            ("GET", "/v1/models/x_123"),
            ("DELETE", "/v1/models/x_123"),
            ("POST", "/v1/models/x_123/predict"),
            ("GET", "/v1/models/x_123/export"),
            ("GET", "/v1/keys"),
            ("POST", "/v1/keys"),
            ("DELETE", "/v1/keys/x_123"),
            ("POST", "/v1/keys/x_123/rotate"),
            ("GET", "/v1/usage"),
            ("POST", "/v1/webhooks"),
            ("GET", "/v1/webhooks"),
            ("GET", "/v1/webhooks/x_123"),
            ("DELETE", "/v1/webhooks/x_123"),
            ("GET", "/v1/webhooks/x_123/deliveries"),
        ]
    )


def _call(client: TestClient, method: str, path: str, headers: dict[str, str]) -> Any:
    kwargs: dict[str, Any] = {"headers": headers}
    if method == "POST" and path == "/v1/datasets":
        kwargs["files"] = {"file": ("d.csv", csv_bytes(sample_rows()), "text/csv")}
    elif method == "POST" and path.endswith("/predict"):
        kwargs["json"] = {"inputs": ["hi"]}
    elif method == "POST" and path == "/v1/jobs":
        kwargs["json"] = {**JOB_BODY, "dataset_id": "x_123"}
    elif method == "POST" and path == "/v1/sweeps":
        kwargs["json"] = {**SWEEP_BODY, "dataset_id": "x_123"}
    elif method == "POST" and path == "/v1/keys":
        kwargs["json"] = {"scopes": ["read"]}
    elif method == "POST" and path == "/v1/webhooks":
        kwargs["json"] = {"url": "https://hooks.example.com/tuneserve"}
    return client.request(method, path, **kwargs)


@pytest.fixture
def lenient_client(api_env: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    """The app with room for more failed authentications from one address than there are
    routes (the default is 30 a minute)."""
    from app.main import create_app

    monkeypatch.setenv("TUNESERVE_AUTH_FAILURES_PER_MINUTE", "1000")
    reset_caches()
    with TestClient(create_app(), raise_server_exceptions=False) as c:
        yield c


@pytest.mark.parametrize(
    "bad_headers",
    [
        {},
        {"Authorization": "Bearer ts_not-a-real-key"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer "},
        {"Authorization": "ts_no_scheme"},
    ],
    ids=["missing", "wrong", "basic", "empty", "no-scheme"],
)
def test_every_v1_route_needs_a_key(
    lenient_client: TestClient, api_env: Path, bad_headers: dict[str, str]
) -> None:
    _every_route_refuses(lenient_client, api_env, bad_headers)


def _every_route_refuses(client: TestClient, api_env: Path, bad_headers: dict[str, str]) -> None:
    for method, path in V1_ROUTES:
        r = _call(client, method, path, bad_headers)
        assert_error(r, 401, "unauthorized")
    # nothing was created by the rejected upload
    assert not (api_env / "datasets").exists() or not any((api_env / "datasets").iterdir())


def test_revoked_key(lenient_client: TestClient, make_key: Callable[[str], dict[str, str]]) -> None:
    client = lenient_client
    from app.db import session_scope
    from app.tenants.orm import ApiKey
    from app.tenants.service import hash_key, revoke_key

    headers = make_key("acme")
    assert client.get("/v1/datasets", headers=headers).status_code == 200
    plain = headers["Authorization"].split(" ", 1)[1]
    with session_scope() as s:
        from sqlalchemy import select

        key_id = s.scalar(select(ApiKey.id).where(ApiKey.key_hash == hash_key(plain)))
        assert key_id is not None
        assert revoke_key(s, key_id=key_id).revoked_at is not None
    client.app.state.principals.clear()  # as TUNESERVE_AUTH_CACHE_S (1 s) later
    for method, path in V1_ROUTES:
        assert_error(_call(client, method, path, headers), 401, "unauthorized")
    # another key of the same tenant still works
    assert client.get("/v1/datasets", headers=make_key("acme")).status_code == 200


def test_health_is_open(client: TestClient) -> None:
    r = client.get("/healthz")
    assert r.status_code == 200
    assert r.json() == {"status": "ok"}


def test_readyz_when_all_up(client: TestClient) -> None:
    r = client.get("/readyz")
    assert r.status_code == 200, r.text
    assert r.json() == {"status": "ok", "checks": {"database": "ok", "queue": "ok"}}


def test_tenant_isolation(client: TestClient, make_key: Callable[[str], dict[str, str]]) -> None:
    a = make_key("tenant-a")
    b = make_key("tenant-b")

    ds = upload(client, a, csv_bytes(sample_rows())).json()
    val = upload(client, a, csv_bytes(sample_rows())).json()
    r = client.post("/v1/jobs", headers=a, json={**JOB_BODY, "dataset_id": ds["id"]})
    assert r.status_code == 201, r.text
    job = r.json()
    r = client.post("/v1/sweeps", headers=a, json={**SWEEP_BODY, "dataset_id": ds["id"]})
    assert r.status_code == 201, r.text
    sweep = r.json()
    model_id = insert_model("tenant-a")
    assert client.get(f"/v1/models/{model_id}", headers=a).status_code == 200

    # B sees none of A's things, by id ...
    not_found = [
        ("GET", f"/v1/datasets/{ds['id']}", None),
        ("GET", f"/v1/datasets/{ds['id']}/preview", None),
        ("GET", f"/v1/datasets/{ds['id']}/labels", None),
        ("DELETE", f"/v1/datasets/{ds['id']}", None),
        ("GET", f"/v1/jobs/{job['id']}", None),
        ("POST", f"/v1/jobs/{job['id']}/cancel", None),
        ("GET", f"/v1/jobs/{job['id']}/events", None),
        ("GET", f"/v1/jobs/{job['id']}/metrics", None),
        ("GET", f"/v1/jobs/{job['id']}/report", None),
        ("GET", f"/v1/jobs/{job['id']}/report/plots/curves.png", None),
        ("GET", f"/v1/sweeps/{sweep['id']}", None),
        ("POST", f"/v1/sweeps/{sweep['id']}/cancel", None),
        ("GET", f"/v1/models/{model_id}", None),
        ("DELETE", f"/v1/models/{model_id}", None),
        ("POST", f"/v1/models/{model_id}/predict", {"inputs": ["hello"]}),
        ("GET", f"/v1/models/{model_id}/export", None),
    ]
    for method, path, body in not_found:
        r = client.request(method, path, headers=b, json=body)
        err = assert_error(r, 404, "not_found")
        assert "tenant-a" not in err["message"]

    # ... nor in lists
    for path in ("/v1/datasets", "/v1/jobs", "/v1/models", "/v1/sweeps", "/v1/webhooks"):
        r = client.get(path, headers=b)
        assert r.status_code == 200, r.text
        assert r.json() == {"data": [], "next_cursor": None}

    # B cannot train on A's dataset, nor validate on it
    b_ds = upload(client, b, csv_bytes(sample_rows())).json()
    r = client.post("/v1/jobs", headers=b, json={**JOB_BODY, "dataset_id": ds["id"]})
    assert assert_error(r, 404, "not_found")["details"]["field"] == "dataset_id"
    r = client.post(
        "/v1/jobs",
        headers=b,
        json={**JOB_BODY, "dataset_id": b_ds["id"], "validation_dataset_id": val["id"]},
    )
    assert assert_error(r, 404, "not_found")["details"]["field"] == "validation_dataset_id"
    r = client.post(
        "/v1/jobs",
        headers=b,
        json={
            **JOB_BODY,
            "dataset_id": b_ds["id"],
            "strategy": {"name": "dann", "target_dataset_id": ds["id"]},
        },
    )
    assert assert_error(r, 404, "not_found")["details"]["field"] == "strategy.target_dataset_id"

    # A's things are untouched by B's attempts
    assert client.get(f"/v1/datasets/{ds['id']}", headers=a).status_code == 200
    assert client.get(f"/v1/jobs/{job['id']}", headers=a).json()["status"] == "queued"
    assert client.get(f"/v1/sweeps/{sweep['id']}", headers=a).json()["status"] == "running"
    assert client.get(f"/v1/models/{model_id}", headers=a).status_code == 200
    model_job = client.get(f"/v1/models/{model_id}", headers=a).json()["job_id"]
    listed = {d["id"] for d in client.get("/v1/jobs", headers=a).json()["data"]}
    sweep_jobs = {entry["job_id"] for entry in sweep["leaderboard"]}
    assert listed == {job["id"], model_job} | sweep_jobs and len(sweep_jobs) == 2
    assert [m["id"] for m in client.get("/v1/models", headers=a).json()["data"]] == [model_id]
    listed = {d["id"] for d in client.get("/v1/datasets", headers=a).json()["data"]}
    assert {ds["id"], val["id"]} < listed and len(listed) == 3  # + insert_model's seed
    assert {d["id"] for d in client.get("/v1/datasets", headers=b).json()["data"]} == {b_ds["id"]}


def test_models_get_list_delete(client: TestClient, auth: dict[str, str]) -> None:
    model_id = insert_model("acme")
    r = client.get(f"/v1/models/{model_id}", headers=auth)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["id"] == model_id
    assert body["labels"] == ["politics", "sport"]
    assert body["strategy"] == "full"
    assert client.get("/v1/models", headers=auth).json()["data"] == [body]
    r = client.delete(f"/v1/models/{model_id}", headers=auth)
    assert r.status_code == 204, r.text
    assert_error(client.get(f"/v1/models/{model_id}", headers=auth), 404, "not_found")
    assert_error(client.delete(f"/v1/models/{model_id}", headers=auth), 404, "not_found")
    assert client.get("/v1/models", headers=auth).json()["data"] == []
