"""Limits per key, per address and per tenant: 429 with Retry-After, kept in Redis so that
they hold across API processes (two apps here), quotas on what a tenant holds, /v1/usage."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import csv_bytes, sample_rows, upload
from tests.api.test_auth_tenants import JOB_BODY, SWEEP_BODY, insert_jobs
from tests.api.test_hostile_uploads import assert_error


@contextmanager
def app_with(monkeypatch: pytest.MonkeyPatch, **settings: str) -> Iterator[TestClient]:
    from app.config import get_settings
    from app.main import create_app

    for name, value in settings.items():
        monkeypatch.setenv(f"TUNESERVE_{name.upper()}", value)
    get_settings.cache_clear()
    with TestClient(create_app(), raise_server_exceptions=False) as c:
        yield c


def test_requests_per_key_are_limited_across_processes(
    api_env: Path, make_key: Callable[[str], dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    key, other = make_key("acme"), make_key("globex")
    with (
        app_with(monkeypatch, rate_limit_per_minute="60", rate_limit_burst="5") as one,
        app_with(monkeypatch) as two,
    ):
        statuses = [c.get("/v1/usage", headers=key).status_code for c in (one, two) * 4]
        # a burst of 5 (+1: the first request of an empty bucket) then one a second: the two
        # processes share one bucket in Redis
        assert statuses[:5] == [200] * 5 and statuses[-1] == 429, statuses
        r = one.get("/v1/usage", headers=key)
        err = assert_error(r, 429, "rate_limited")
        assert 1 <= int(r.headers["retry-after"]) <= 2, r.headers
        assert "per minute" in err["message"]
        # another key is not slowed by it
        assert one.get("/v1/usage", headers=other).status_code == 200


def test_failed_authentication_is_throttled_per_address(
    api_env: Path, make_key: Callable[[str], dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    good = make_key("acme")
    with app_with(monkeypatch, auth_failures_per_minute="5") as c:
        wrong = {"Authorization": "Bearer ts_guess"}
        codes = [c.get("/v1/datasets", headers=wrong).status_code for _ in range(7)]
        assert codes == [401] * 5 + [429] * 2
        r = c.get("/v1/datasets", headers={"Authorization": "Bearer ts_another_guess"})
        assert_error(r, 429, "too_many_auth_failures")
        assert 1 <= int(r.headers["retry-after"]) <= 60
        # a key known to this process is not held back by the address's failures
        # (it was not looked up after the limit: a valid key seen before is served from memory)
        c.app.state.principals.clear()
        assert_error(c.get("/v1/datasets", headers=good), 429, "too_many_auth_failures")


def test_active_jobs_quota(
    client: TestClient, api_env: Path, auth: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    ds = upload(client, auth, csv_bytes(sample_rows())).json()
    insert_jobs(["queued", "running", "succeeded", "failed"], "acme")
    with app_with(monkeypatch, max_active_jobs="3") as c:
        r = c.post("/v1/jobs", headers=auth, json={**JOB_BODY, "dataset_id": ds["id"]})
        assert r.status_code == 201, r.text
        r = c.post("/v1/jobs", headers=auth, json={**JOB_BODY, "dataset_id": ds["id"]})
        err = assert_error(r, 429, "quota_exceeded")
        assert err["details"] == {"resource": "active_jobs", "limit": 3, "used": 3}
        assert "TUNESERVE_MAX_ACTIVE_JOBS" in err["message"] and r.headers["retry-after"]
        # a sweep that does not fit creates nothing at all
        r = c.post("/v1/sweeps", headers=auth, json={**SWEEP_BODY, "dataset_id": ds["id"]})
        assert_error(r, 429, "quota_exceeded")
        assert len(c.get("/v1/sweeps", headers=auth).json()["data"]) == 0
        usage = c.get("/v1/usage", headers=auth).json()
        assert usage["active_jobs"] == {"used": 3, "limit": 3}


def test_models_quota_counts_the_models_jobs_will_make(
    client: TestClient, auth: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.api.test_auth_tenants import insert_model

    ds = upload(client, auth, csv_bytes(sample_rows())).json()
    insert_model("acme")
    insert_jobs(["queued"], "acme")
    with app_with(monkeypatch, max_models="2") as c:
        r = c.post("/v1/jobs", headers=auth, json={**JOB_BODY, "dataset_id": ds["id"]})
        assert assert_error(r, 429, "quota_exceeded")["details"]["resource"] == "models"


def test_datasets_and_bytes_quota(
    client: TestClient, api_env: Path, auth: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.api.test_datasets import stored_files

    first = upload(client, auth, csv_bytes(sample_rows()))
    assert first.status_code == 201
    size = first.json()["size_bytes"]
    with app_with(monkeypatch, max_datasets="1") as c:
        assert_error(upload(c, auth, csv_bytes(sample_rows())), 429, "quota_exceeded")
    before = stored_files(api_env)
    with app_with(monkeypatch, max_datasets="10", max_stored_bytes=str(size + 100)) as c:
        r = upload(c, auth, csv_bytes(sample_rows()))
        err = assert_error(r, 413, "storage_quota_exceeded")
        assert err["details"]["limit"] == size + 100
        assert stored_files(api_env) == before  # nothing written
        usage = c.get("/v1/usage", headers=auth).json()
        assert usage["stored_bytes"] == {"used": size, "limit": size + 100}
        assert usage["datasets"]["used"] == 1


def test_usage_shows_the_key_and_limits(client: TestClient, auth: dict[str, str]) -> None:
    r = client.get("/v1/usage", headers=auth)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    assert body["key_scopes"] == ["admin"]
    assert body["active_jobs"] == {"used": 0, "limit": 100}
    assert body["rate_limit"] == {"requests_per_minute": 3000, "burst": 300}
