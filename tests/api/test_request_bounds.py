"""Every request is bounded and answered in the error shape, whatever its bytes: a body past
its cap is refused while it is read and before the key is looked at; JSON that is not Unicode
is a 422 before anything is written; ids, cursors, query strings and headers never give a
5xx; what was stored is always readable; every response carries the security headers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import csv_bytes, sample_rows, upload
from tests.api.test_auth_tenants import JOB_BODY, SWEEP_BODY, insert_jobs, insert_model
from tests.api.test_hostile_uploads import assert_error

JSON = {"Content-Type": "application/json"}
CAP = 4 * 1024 * 1024  # TUNESERVE_MAX_JSON_BODY_BYTES


def _chunks(total: int, size: int = 256 * 1024) -> Iterator[bytes]:
    sent = 0
    while sent < total:
        yield b" " * min(size, total - sent)
        sent += size


def test_a_body_past_the_cap_is_refused_before_the_key(
    client: TestClient, auth: dict[str, str]
) -> None:
    # declared: refused on the header alone
    headers = {**JSON, "Content-Length": str(CAP + 1)}
    r = client.post("/v1/jobs", headers=headers, content=b"{}")
    err = assert_error(r, 413, "body_too_large")
    assert err["details"] == {"max_bytes": CAP}
    # streamed without a length and without a key: 401, and the body is never read
    r = client.post("/v1/jobs", headers=JSON, content=_chunks(CAP + 10))
    assert_error(r, 401, "unauthorized")
    # with a key: refused once the count passes the cap
    r = client.post("/v1/jobs", headers={**auth, **JSON}, content=_chunks(CAP + 10))
    assert_error(r, 413, "body_too_large")


def test_the_key_is_checked_before_the_body_is_parsed(client: TestClient) -> None:
    r = client.post("/v1/jobs", headers=JSON, content=b"{not json at all")
    assert_error(r, 401, "unauthorized")


def test_bodies_under_the_cap_still_work(client: TestClient, auth: dict[str, str]) -> None:
    ds = upload(client, auth, csv_bytes(sample_rows())).json()
    body = {**JOB_BODY, "dataset_id": ds["id"], "name": "x" * 100}
    r = client.post("/v1/jobs", headers=auth, json=body)
    assert r.status_code in (201, 422), r.text  # whatever the route says, it got the body


def _jobs_listable(client: TestClient, auth: dict[str, str]) -> list[Any]:
    r = client.get("/v1/jobs", headers=auth)
    assert r.status_code == 200, r.text
    return list(r.json()["data"])


@pytest.mark.parametrize(
    "path,raw",
    [
        ("/v1/jobs", b'{"base_model": "m", "dataset_id": "d", "strategy": {"name": "\\ud800"}}'),
        ("/v1/jobs", b'{"base_model": "m", "dataset_id": "d", "strategy": {"\\udfff": 1}}'),
        ("/v1/jobs", b'{"base_model": "\\ud83d", "dataset_id": "d", "strategy": {}}'),
        ("/v1/sweeps", b'{"base_model": "m", "dataset_id": "\\uDC00", "strategies": []}'),
        ("/v1/keys", b'{"name": "a\\ud800b", "scopes": ["read"]}'),
        ("/v1/jobs", b'{"base_model": "\xff\xfe"}'),  # not UTF-8 at all
    ],
)
def test_json_that_is_not_unicode_is_422_and_writes_nothing(
    client: TestClient, auth: dict[str, str], path: str, raw: bytes
) -> None:
    r = client.post(path, headers={**auth, **JSON}, content=raw)
    err = assert_error(r, 422, "invalid_input")
    assert "Unicode" in err["message"] or "UTF-8" in err["message"]
    assert _jobs_listable(client, auth) == []


def test_a_job_whose_strategy_holds_a_lone_surrogate_is_refused_and_reads_go_on(
    client: TestClient, auth: dict[str, str]
) -> None:
    ds = upload(client, auth, csv_bytes(sample_rows())).json()
    body = (
        b'{"base_model": "all-MiniLM-L6-v2", "dataset_id": "' + ds["id"].encode() + b'", '
        b'"strategy": {"name": "full", "note": "\\ud800"}}'
    )
    assert_error(client.post("/v1/jobs", headers={**auth, **JSON}, content=body), 422)
    assert _jobs_listable(client, auth) == []
    # escaped surrogate *pairs* are ordinary text
    fine = body.replace(b"\\ud800", b"\\ud83d\\ude00")
    r = client.post("/v1/jobs", headers={**auth, **JSON}, content=fine)
    assert r.status_code in (201, 422), r.text
    assert r.status_code != 422 or "Unicode" not in r.text


def test_what_was_stored_is_always_readable(client: TestClient, auth: dict[str, str]) -> None:
    """A row written before the API refused such strings (or by a path that is not the API)
    holds a lone surrogate: the reads still answer, with U+FFFD in its place."""
    from app.db import session_scope
    from app.jobs.orm import Job

    [job_id] = insert_jobs(["queued"], "acme")
    with session_scope() as s:
        job = s.get(Job, job_id)
        assert job is not None
        job.strategy = {"name": "full", "note": "bad \ud800 text", "\udfff": 1}
    r = client.get(f"/v1/jobs/{job_id}", headers=auth)
    assert r.status_code == 200, r.text
    assert "\ufffd" in r.json()["strategy"]["note"]
    assert [j["id"] for j in _jobs_listable(client, auth)] == [job_id]


@pytest.mark.parametrize(
    "cursor",
    [
        "WyIyMDI2LTAxLTAxVDAwOjAwOjAwIiwgIlx1ZDgwMCJd",  # ["2026-01-01T00:00:00", "\ud800"]
        "not base64 !!",
        "W10",  # []
        "e30",  # {}
        "WzEsIDJd",  # [1, 2]
        "x" * 5000,
    ],
)
def test_bad_cursors_are_422(client: TestClient, auth: dict[str, str], cursor: str) -> None:
    for path in ("/v1/jobs", "/v1/datasets", "/v1/models", "/v1/sweeps"):
        r = client.get(path, headers=auth, params={"cursor": cursor})
        assert_error(r, 422)


@pytest.mark.parametrize("raw_id", ["%ED%A0%80", "%FF%FE", "%00", "a%2Fb", "..", "x" * 300])
def test_strange_ids_are_404(client: TestClient, auth: dict[str, str], raw_id: str) -> None:
    for path in ("/v1/jobs/{}", "/v1/datasets/{}", "/v1/models/{}", "/v1/sweeps/{}"):
        r = client.get(path.format(raw_id), headers=auth)
        assert r.status_code in (404, 422), (path, raw_id, r.text)
        assert_error(r, r.status_code)


def test_strange_query_strings_and_headers(client: TestClient, auth: dict[str, str]) -> None:
    for query in ("status=%ED%A0%80", "limit=%FF", "limit=99999999999999999999", "after=-1"):
        r = client.get(f"/v1/jobs?{query}", headers=auth)
        assert r.status_code in (200, 422), (query, r.text)
    ds = upload(client, auth, csv_bytes(sample_rows())).json()
    headers: dict[str, Any] = {**auth, **JSON, "Idempotency-Key": "café\xff".encode("latin-1")}
    r = client.post("/v1/jobs", headers=headers, json={**JOB_BODY, "dataset_id": ds["id"]})
    assert r.status_code in (201, 422), r.text


def test_deeply_nested_json_is_an_error_not_a_crash(
    client: TestClient, auth: dict[str, str]
) -> None:
    deep = b"[" * 200_000 + b"]" * 200_000
    r = client.post("/v1/jobs", headers={**auth, **JSON}, content=deep)
    assert_error(r, 422)
    r = client.post("/v1/sweeps", headers={**auth, **JSON}, content=b'{"a": "\\ud800' + deep)
    assert_error(r, 422)


def test_security_headers_everywhere(client: TestClient, auth: dict[str, str]) -> None:
    model_id = insert_model("acme")
    for method, path, headers in [
        ("GET", "/healthz", {}),
        ("GET", "/v1/datasets", auth),
        ("GET", "/v1/datasets", {}),
        ("GET", "/v1/nothing-here", auth),
        ("GET", f"/v1/models/{model_id}", auth),
    ]:
        r = client.request(method, path, headers=headers)
        assert r.headers["x-content-type-options"] == "nosniff", path
        assert r.headers["referrer-policy"] == "no-referrer"
        assert "default-src 'none'" in r.headers["content-security-policy"]
        if path.startswith("/v1/"):
            assert r.headers["cache-control"] == "no-store"


def test_links_come_from_the_public_url_not_the_host_header(
    api_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from starlette.requests import Request

    from app.config import get_settings
    from app.links import link
    from app.main import create_app

    app = create_app()
    request = Request({"type": "http", "app": app, "headers": [(b"host", b"evil.example")]})
    path = "/v1/jobs/job_1/report/plots/curves.png"
    assert link(request, "get_report_plot", job_id="job_1", name="curves.png") == path
    monkeypatch.setenv("TUNESERVE_PUBLIC_URL", "https://ts.example.com/")
    get_settings.cache_clear()
    got = link(request, "get_report_plot", job_id="job_1", name="curves.png")
    assert got == "https://ts.example.com" + path


def test_an_empty_idempotency_key_is_refused_not_stored(
    client: TestClient, auth: dict[str, str]
) -> None:
    """Found by the fuzzer: an empty key was stored, missed by the lookup (which treated it
    as no key) and then hit the unique index: 201, then 500."""
    ds = upload(client, auth, csv_bytes(sample_rows())).json()
    headers = {**auth, "Idempotency-Key": ""}
    for path, body in [
        ("/v1/jobs", {**JOB_BODY, "dataset_id": ds["id"]}),
        ("/v1/sweeps", {**SWEEP_BODY, "dataset_id": ds["id"]}),
    ]:
        for _ in range(2):
            err = assert_error(client.post(path, headers=headers, json=body), 422)
            assert "idempotency" in str(err).lower()
    assert _jobs_listable(client, auth) == []


def test_405_names_every_method_of_the_resource(client: TestClient, auth: dict[str, str]) -> None:
    """Found by the fuzzer: Starlette's ``Allow`` named only the first matching route's."""
    for method, path, allowed in [
        ("PUT", "/v1/datasets", "GET, POST"),
        ("PATCH", "/v1/datasets/ds_x", "DELETE, GET"),
        ("PUT", "/v1/keys", "GET, POST"),
        ("POST", "/healthz", "GET"),
    ]:
        r = client.request(method, path, headers=auth)
        assert_error(r, 405, "method_not_allowed")
        assert r.headers["allow"] == allowed, path
