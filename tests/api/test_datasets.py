"""Datasets over HTTP: upload (CSV, JSONL, Parquet), list with cursors, read, preview, delete."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import csv_bytes, sample_rows, upload


def stored_files(data_dir: Path) -> list[str]:
    """Every file under the store's ``datasets/`` and ``tmp/uploads/`` (relative paths)."""
    found: list[str] = []
    for sub in ("datasets", "tmp/uploads"):
        root = data_dir / sub
        if root.exists():
            found += [str(p.relative_to(data_dir)) for p in root.rglob("*") if p.is_file()]
    return sorted(found)


def jsonl_bytes(rows: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def parquet_bytes(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def _check_ready(body: dict[str, Any], *, fmt: str, rows: int) -> None:
    assert body["status"] == "ready"
    assert body["format"] == fmt
    assert body["num_rows"] == rows
    assert body["labels"] == ["politics", "sport"]
    assert body["report"]["rows"] == rows
    assert body["report"]["label_counts"] == {"politics": rows // 2, "sport": rows // 2}
    assert body["report"]["errors"] == []
    assert body["id"].startswith("ds_")


def test_upload_csv(client: TestClient, auth: dict[str, str], api_env: Path) -> None:
    data = csv_bytes(sample_rows(6))
    r = upload(client, auth, data, filename="news.csv", name="News")
    assert r.status_code == 201, r.text
    body = r.json()
    _check_ready(body, fmt="csv", rows=12)
    assert body["name"] == "News"
    assert body["filename"] == "news.csv"
    assert body["size_bytes"] == len(data)
    assert body["task"] == "text-classification"
    # the canonical Parquet is in the store; the upload temp file is gone
    assert stored_files(api_env) == [f"datasets/{body['id']}/data.parquet"]


def test_upload_jsonl(client: TestClient, auth: dict[str, str]) -> None:
    rows = [{"text": t, "label": y} for t, y in sample_rows(5)]
    r = upload(client, auth, jsonl_bytes(rows), filename="news.jsonl")
    assert r.status_code == 201, r.text
    _check_ready(r.json(), fmt="jsonl", rows=10)
    assert r.json()["name"] == "news.jsonl"  # the name defaults to the file name


def test_upload_parquet(client: TestClient, auth: dict[str, str]) -> None:
    texts, labels = zip(*sample_rows(7), strict=True)
    table = pa.table({"body": list(texts), "topic": list(labels)})
    r = upload(
        client,
        auth,
        parquet_bytes(table),
        filename="news.parquet",
        text_column="body",
        label_column="topic",
    )
    assert r.status_code == 201, r.text
    body = r.json()
    _check_ready(body, fmt="parquet", rows=14)
    assert body["column_mapping"]["text"] == "body"
    assert body["column_mapping"]["label"] == "topic"


def test_get_and_preview(client: TestClient, auth: dict[str, str]) -> None:
    ds = upload(client, auth, csv_bytes(sample_rows(6))).json()
    r = client.get(f"/v1/datasets/{ds['id']}", headers=auth)
    assert r.status_code == 200, r.text
    assert r.json() == ds

    r = client.get(f"/v1/datasets/{ds['id']}/preview", headers=auth, params={"limit": 3})
    assert r.status_code == 200, r.text
    preview = r.json()
    assert preview["id"] == ds["id"]
    assert preview["columns"] == ["text", "label"]
    assert preview["total_rows"] == 12
    assert preview["rows"] == [{"text": t, "label": y} for t, y in sample_rows(6)[:3]]


def test_list_paginates(client: TestClient, auth: dict[str, str]) -> None:
    ids = []
    for i in range(5):
        r = upload(client, auth, csv_bytes(sample_rows(3)), filename=f"d{i}.csv")
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])

    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        r = client.get("/v1/datasets", headers=auth, params=params)
        assert r.status_code == 200, r.text
        page = r.json()
        assert len(page["data"]) <= 2
        seen += [d["id"] for d in page["data"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
        assert pages < 10
    assert pages == 3
    assert len(seen) == len(set(seen)) == 5
    assert set(seen) == set(ids)
    # newest first
    created = [client.get(f"/v1/datasets/{i}", headers=auth).json()["created_at"] for i in seen]
    assert created == sorted(created, reverse=True)

    r = client.get("/v1/datasets", headers=auth)
    assert len(r.json()["data"]) == 5
    assert r.json()["next_cursor"] is None


def test_list_bad_limit_and_cursor(client: TestClient, auth: dict[str, str]) -> None:
    for params in ({"limit": 0}, {"limit": 201}, {"cursor": "not-a-cursor!"}):
        r = client.get("/v1/datasets", headers=auth, params=params)
        assert r.status_code == 422, (params, r.text)
        assert set(r.json()["error"]) == {"code", "message", "details"}


def test_delete(client: TestClient, auth: dict[str, str], api_env: Path) -> None:
    ds = upload(client, auth, csv_bytes(sample_rows(6))).json()
    assert stored_files(api_env)
    r = client.delete(f"/v1/datasets/{ds['id']}", headers=auth)
    assert r.status_code == 204, r.text
    assert r.content == b""
    assert stored_files(api_env) == []
    for path in (f"/v1/datasets/{ds['id']}", f"/v1/datasets/{ds['id']}/preview"):
        r = client.get(path, headers=auth)
        assert r.status_code == 404, r.text
        assert r.json()["error"]["code"] == "not_found"
    r = client.delete(f"/v1/datasets/{ds['id']}", headers=auth)
    assert r.status_code == 404
    assert client.get("/v1/datasets", headers=auth).json()["data"] == []


def test_delete_in_use_by_queued_job(client: TestClient, auth: dict[str, str]) -> None:
    ds = upload(client, auth, csv_bytes(sample_rows(6))).json()
    r = client.post(
        "/v1/jobs",
        headers=auth,
        json={
            "base_model": "all-MiniLM-L6-v2",
            "dataset_id": ds["id"],
            "strategy": {"name": "full"},
        },
    )
    assert r.status_code == 201, r.text
    job = r.json()
    r = client.delete(f"/v1/datasets/{ds['id']}", headers=auth)
    assert r.status_code == 409, r.text
    err = r.json()["error"]
    assert err["code"] == "dataset_in_use"
    assert err["details"]["job_id"] == job["id"]
    assert client.get(f"/v1/datasets/{ds['id']}", headers=auth).status_code == 200
    assert client.get(f"/v1/datasets/{ds['id']}/preview", headers=auth).status_code == 200

    # once the job is cancelled the dataset may go
    assert client.post(f"/v1/jobs/{job['id']}/cancel", headers=auth).status_code == 200
    assert client.delete(f"/v1/datasets/{ds['id']}", headers=auth).status_code == 204


def _unlabeled(client: TestClient, auth: dict[str, str]) -> dict[str, Any]:
    texts = "\n".join(f"in-domain sentence number {i}" for i in range(20))
    r = upload(client, auth, f"text\n{texts}\n".encode(), task="unlabeled-text")
    assert r.status_code == 201, r.text
    return dict(r.json())


@pytest.mark.parametrize("role", ["validation", "test", "dann_target", "sweep_test"])
def test_delete_in_use_in_every_role(client: TestClient, auth: dict[str, str], role: str) -> None:
    """A dataset an unfinished job (or sweep candidate) reads in any role cannot be deleted."""
    train = upload(client, auth, csv_bytes(sample_rows(6))).json()
    used = (
        _unlabeled(client, auth)
        if role == "dann_target"
        else upload(
            client, auth, csv_bytes([(f"held-out {t}", y) for t, y in sample_rows(6)])
        ).json()
    )
    base: dict[str, Any] = {"base_model": "all-MiniLM-L6-v2", "dataset_id": train["id"]}
    if role == "sweep_test":
        body = {**base, "strategies": [{"name": "full"}], "test_dataset_id": used["id"]}
        r = client.post("/v1/sweeps", headers=auth, json=body)
        assert r.status_code == 201, r.text
        job_id = r.json()["leaderboard"][0]["job_id"]
    else:
        strategy: dict[str, Any] = {"name": "full"}
        if role == "dann_target":
            strategy = {"name": "dann", "target_dataset_id": used["id"]}
        extra = {"validation": "validation_dataset_id", "test": "test_dataset_id"}.get(role)
        body = {**base, "strategy": strategy, **({extra: used["id"]} if extra else {})}
        r = client.post("/v1/jobs", headers=auth, json=body)
        assert r.status_code == 201, r.text
        job_id = r.json()["id"]

    r = client.delete(f"/v1/datasets/{used['id']}", headers=auth)
    assert r.status_code == 409, r.text
    err = r.json()["error"]
    assert err["code"] == "dataset_in_use"
    assert err["details"]["job_id"] == job_id
    assert client.get(f"/v1/datasets/{used['id']}", headers=auth).status_code == 200

    assert client.post(f"/v1/jobs/{job_id}/cancel", headers=auth).status_code == 200
    assert client.delete(f"/v1/datasets/{used['id']}", headers=auth).status_code == 204
