"""Keys: scopes (an inference-only key predicts and nothing else), expiry, last use, the
``/v1/keys`` routes of an admin key, and the ``tuneserve keys`` commands."""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import csv_bytes, sample_rows, upload
from tests.api.test_auth_tenants import V1_ROUTES, _call, insert_model
from tests.api.test_hostile_uploads import assert_error
from tests.integration.conftest import ROOT


def _key(tenant: str = "acme", scopes: list[str] | None = None, **kw: Any) -> dict[str, str]:
    from app.db import session_scope
    from app.tenants.service import create_key

    with session_scope() as s:
        _, plain = create_key(s, tenant_name=tenant, scopes=scopes, **kw)
    return {"Authorization": f"Bearer {plain}"}


def _allowed(r: Any) -> bool:
    """The request got past authorization (whatever the route then said)."""
    return r.status_code not in (401, 403)


def test_an_inference_key_predicts_and_does_nothing_else(client: TestClient, api_env: Path) -> None:
    infer = _key(scopes=["infer"])
    model_id = insert_model("acme")
    for method, path in V1_ROUTES:
        r = _call(client, method, path, infer)
        if method == "POST" and path.endswith("/predict"):
            assert _allowed(r), r.text
        else:
            err = assert_error(r, 403, "forbidden")
            assert err["details"]["key_scopes"] == ["infer"]
    # its own tenant's model is found (the route runs: no worker here, so it times out or 503s)
    r = client.post(f"/v1/models/{model_id}/predict", headers=infer, json={"inputs": ["hi"]})
    assert _allowed(r) and r.status_code != 404, r.text


def test_read_and_train_scopes(client: TestClient) -> None:
    read = _key(scopes=["read"])
    train = _key(scopes=["train"])
    assert client.get("/v1/datasets", headers=read).status_code == 200
    assert_error(upload(client, read, csv_bytes(sample_rows())), 403, "forbidden")
    assert_error(client.get("/v1/keys", headers=read), 403, "forbidden")
    assert upload(client, train, csv_bytes(sample_rows())).status_code == 201
    # train without read cannot list; a key may hold both
    assert_error(client.get("/v1/datasets", headers=train), 403, "forbidden")
    both = _key(scopes=["train", "read"])
    assert client.get("/v1/datasets", headers=both).json()["data"]
    model_id = insert_model("acme")
    r = client.post(f"/v1/models/{model_id}/predict", headers=train, json={"inputs": ["x"]})
    assert_error(r, 403, "forbidden")


def test_an_expired_key_is_refused(client: TestClient) -> None:
    from app.db import utcnow

    past = _key(expires_at=utcnow() - timedelta(seconds=1))
    assert_error(client.get("/v1/datasets", headers=past), 401, "unauthorized")
    future = _key(expires_at=utcnow() + timedelta(days=1))
    assert client.get("/v1/datasets", headers=future).status_code == 200


def test_unauthorized_says_how_to_authenticate(client: TestClient) -> None:
    r = client.get("/v1/datasets")
    assert_error(r, 401, "unauthorized")
    assert r.headers["www-authenticate"].startswith("Bearer")


def test_admin_key_manages_the_tenants_keys(client: TestClient) -> None:
    admin = _key("acme")
    other_tenant = _key("globex")
    r = client.post(
        "/v1/keys", headers=admin, json={"name": "ci", "scopes": ["infer"], "expires_in_days": 7}
    )
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["scopes"] == ["infer"] and created["name"] == "ci"
    assert created["key"].startswith("ts_") and created["key"].startswith(created["prefix"])
    assert created["expires_at"] is not None
    new_key = {"Authorization": f"Bearer {created['key']}"}
    assert_error(client.get("/v1/datasets", headers=new_key), 403, "forbidden")

    listed = client.get("/v1/keys", headers=admin).json()["data"]
    assert created["id"] in {k["id"] for k in listed}
    assert all("key" not in k and "key_hash" not in k for k in listed)
    mine = next(k for k in listed if k["id"] == created["id"])
    assert mine["last_used_at"] is not None  # it was used (and refused) just above
    # another tenant's admin sees none of them and cannot touch them
    assert created["id"] not in {
        k["id"] for k in client.get("/v1/keys", headers=other_tenant).json()["data"]
    }
    assert_error(client.delete(f"/v1/keys/{created['id']}", headers=other_tenant), 404)
    assert_error(client.post(f"/v1/keys/{created['id']}/rotate", headers=other_tenant), 404)

    # rotation: same name and scopes, a new key; the old one stops at once in this process
    r = client.post(f"/v1/keys/{created['id']}/rotate", headers=admin)
    assert r.status_code == 201, r.text
    rotated = r.json()
    assert rotated["id"] != created["id"] and rotated["scopes"] == ["infer"]
    assert rotated["expires_at"] == created["expires_at"]
    assert_error(client.get("/v1/usage", headers=new_key), 401, "unauthorized")
    r = client.delete(f"/v1/keys/{rotated['id']}", headers=admin)
    assert r.status_code == 204
    assert_error(client.delete(f"/v1/keys/{rotated['id']}", headers=admin), 404)
    revoked = client.get("/v1/keys?include_revoked=true", headers=admin).json()["data"]
    assert {created["id"], rotated["id"]} <= {k["id"] for k in revoked if k["revoked_at"]}


@pytest.mark.parametrize(
    "body",
    [
        {"scopes": []},
        {"scopes": ["root"]},
        {"scopes": ["read"], "expires_in_days": 0},
        {"scopes": ["read"], "name": "x" * 201},
        {"scopes": ["read"], "tenant": "globex"},
    ],
)
def test_key_create_validation(client: TestClient, body: dict[str, Any]) -> None:
    assert_error(client.post("/v1/keys", headers=_key(), json=body), 422, "invalid_input")


def _cli(api_env: Path, *args: str) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run(
        [sys.executable, "-m", "app.cli", "keys", *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_keys_commands(client: TestClient, api_env: Path) -> None:
    out = _cli(api_env, "create", "--tenant", "acme", "--scope", "infer", "--name", "bot")
    assert out.returncode == 0, out.stderr
    key_id = re.search(r"key id: (key_\S+)", out.stdout)
    plain = re.search(r"store it now\): (ts_\S+)", out.stdout)
    assert key_id and plain, out.stdout
    headers = {"Authorization": f"Bearer {plain[1]}"}
    assert_error(client.get("/v1/datasets", headers=headers), 403, "forbidden")

    listing = _cli(api_env, "list", "--tenant", "acme")
    assert listing.returncode == 0 and key_id[1] in listing.stdout and "infer" in listing.stdout
    assert plain[1] not in listing.stdout

    rotated = _cli(api_env, "rotate", key_id[1])
    assert rotated.returncode == 0, rotated.stderr
    new_id = re.search(r"new key id: (key_\S+)", rotated.stdout)
    assert new_id and new_id[1] != key_id[1]
    assert _cli(api_env, "revoke", new_id[1]).returncode == 0
    again = _cli(api_env, "revoke", new_id[1])
    assert again.returncode == 1 and "no active key" in again.stdout
    assert new_id[1] not in _cli(api_env, "list").stdout
    assert _cli(api_env, "create", "--tenant", "acme", "--scope", "root").returncode == 2
