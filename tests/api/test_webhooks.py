"""Webhooks over HTTP on SQLite and PostgreSQL: register (the secret shown once), validation,
the cap per tenant, tenancy, and the deliveries recorded when a job or sweep ends."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient

from app.webhooks.orm import EVENT_TYPES
from tests.api.conftest import csv_bytes, sample_rows, upload
from tests.api.test_hostile_uploads import assert_error
from tests.api.test_sweeps import create as create_sweep
from tests.api.test_sweeps import finish

HOOK = "https://hooks.example.com/tuneserve"


@dataclass
class Received:
    path: str
    headers: dict[str, str]  # names lowercased
    body: bytes


class Receiver:
    """A real HTTP server on 127.0.0.1 in a thread: records each POST and answers the given
    statuses in order, then 200 (a 3xx points elsewhere on itself)."""

    def __init__(self, statuses: tuple[int, ...] = ()) -> None:
        self.requests: list[Received] = []
        self.statuses = list(statuses)
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                headers = {k.lower(): v for k, v in self.headers.items()}
                with outer.lock:
                    outer.requests.append(Received(self.path, headers, body))
                    status = outer.statuses.pop(0) if outer.statuses else 200
                self.send_response(status)
                if 300 <= status < 400:
                    self.send_header("Location", f"{outer.url}/elsewhere")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def received(self) -> list[Received]:
        with self.lock:
            return list(self.requests)

    def wait_for(self, count: int, timeout: float = 60, why: Callable[[], str] = str) -> None:
        deadline = time.monotonic() + timeout
        while len(self.received()) < count:
            assert time.monotonic() < deadline, f"{len(self.received())} of {count}: {why()}"
            time.sleep(0.1)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def register(client: TestClient, auth: dict[str, str], **body: Any) -> Any:
    return client.post("/v1/webhooks", headers=auth, json={"url": HOOK, **body})


def set_env(monkeypatch: pytest.MonkeyPatch, **values: str) -> None:
    from app.config import get_settings

    for key, value in values.items():
        monkeypatch.setenv(f"TUNESERVE_{key.upper()}", value)
    get_settings.cache_clear()


def deliveries_in_db(webhook_id: str) -> list[dict[str, Any]]:
    from sqlalchemy import select

    from app.db import session_scope
    from app.webhooks.orm import WebhookDelivery

    with session_scope() as s:
        rows = s.scalars(select(WebhookDelivery).where(WebhookDelivery.endpoint_id == webhook_id))
        return [{"id": r.id, "type": r.event_type, "body": r.body} for r in rows]


def test_register_shows_the_secret_once(client: TestClient, auth: dict[str, str]) -> None:
    r = register(client, auth, description="ops channel")
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["id"].startswith("whk_")
    assert created["secret"].startswith("whsec_") and len(created["secret"]) > 40
    assert created["events"] == list(EVENT_TYPES)  # default: every event
    assert (created["url"], created["description"]) == (HOOK, "ops channel")

    got = client.get(f"/v1/webhooks/{created['id']}", headers=auth)
    assert got.status_code == 200
    assert "secret" not in got.json()
    assert got.json() == {k: v for k, v in created.items() if k != "secret"}
    listed = client.get("/v1/webhooks", headers=auth).json()
    assert [w["id"] for w in listed["data"]] == [created["id"]]
    assert created["secret"] not in str(listed) and created["secret"] not in got.text
    assert register(client, auth).json()["secret"] != created["secret"]  # one secret each


def test_events_are_a_subset_in_canonical_order(client: TestClient, auth: dict[str, str]) -> None:
    r = register(client, auth, events=["sweep.failed", "job.succeeded", "sweep.failed"])
    assert r.status_code == 201, r.text
    assert r.json()["events"] == ["job.succeeded", "sweep.failed"]


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("ftp://hooks.example.com/x", "invalid_url"),
        ("javascript:alert(1)", "invalid_url"),
        ("hooks.example.com/no-scheme", "invalid_url"),
        ("https://user:pass@hooks.example.com/x", "invalid_url"),
        ("https://token@hooks.example.com/x", "invalid_url"),
        ("https:///no-host", "invalid_url"),
        ("https://hooks.example.com:99999/x", "invalid_url"),
        ("https://hooks example.com/x", "invalid_url"),
        ("https://hooks.example.com/x#frag", "invalid_url"),
        ("http://127.0.0.1:8080/x", "address_not_allowed"),
        ("http://localhost/x", "address_not_allowed"),
        ("http://[::1]/x", "address_not_allowed"),
        ("http://169.254.169.254/latest/meta-data", "address_not_allowed"),
        ("http://10.1.2.3/x", "address_not_allowed"),
    ],
)
def test_bad_urls_are_refused(
    client: TestClient, auth: dict[str, str], url: str, code: str
) -> None:
    err = assert_error(client.post("/v1/webhooks", headers=auth, json={"url": url}), 422, code)
    assert "url" in err["message"]


def test_other_invalid_bodies(client: TestClient, auth: dict[str, str]) -> None:
    assert_error(register(client, auth, url="https://x.example/" + "a" * 2100), 422)
    assert_error(register(client, auth, events=["job.started"]), 422)
    assert_error(register(client, auth, events=[]), 422)
    assert_error(register(client, auth, secret="mine"), 422)  # not a field
    assert_error(register(client, auth, description="x" * 501), 422)
    assert client.get("/v1/webhooks", headers=auth).json()["data"] == []


def test_private_addresses_when_allowed(
    client: TestClient, auth: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    set_env(monkeypatch, webhook_allow_private="true")
    assert register(client, auth, url="http://127.0.0.1:8080/x").status_code == 201
    assert_error(register(client, auth, url="http://u:p@127.0.0.1/x"), 422, "invalid_url")


def test_the_cap_per_tenant(
    client: TestClient,
    auth: dict[str, str],
    make_key: Callable[[str], dict[str, str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    set_env(monkeypatch, webhooks_max_per_tenant="2")
    first = register(client, auth).json()
    register(client, auth)
    r = register(client, auth)
    err = assert_error(r, 429, "quota_exceeded")
    assert err["details"] == {"resource": "webhooks", "limit": 2, "used": 2}
    assert r.headers["Retry-After"].isdigit()
    assert register(client, make_key("other")).status_code == 201  # a cap per tenant
    assert client.delete(f"/v1/webhooks/{first['id']}", headers=auth).status_code == 204
    assert register(client, auth).status_code == 201


def test_tenancy_and_delete(
    client: TestClient, auth: dict[str, str], make_key: Callable[[str], dict[str, str]]
) -> None:
    mine = register(client, auth).json()
    other = make_key("other")
    for path in (f"/v1/webhooks/{mine['id']}", f"/v1/webhooks/{mine['id']}/deliveries"):
        assert_error(client.get(path, headers=other), 404, "not_found")
    assert_error(client.delete(f"/v1/webhooks/{mine['id']}", headers=other), 404)
    assert client.get("/v1/webhooks", headers=other).json() == {"data": [], "next_cursor": None}

    assert client.delete(f"/v1/webhooks/{mine['id']}", headers=auth).status_code == 204
    assert_error(client.get(f"/v1/webhooks/{mine['id']}", headers=auth), 404)
    assert_error(client.delete(f"/v1/webhooks/{mine['id']}", headers=auth), 404)
    assert_error(client.get("/v1/webhooks/whk_nope/deliveries", headers=auth), 404)


def test_pages(client: TestClient, auth: dict[str, str]) -> None:
    made = [register(client, auth).json()["id"] for _ in range(3)]
    first = client.get("/v1/webhooks", headers=auth, params={"limit": 2}).json()
    assert len(first["data"]) == 2 and first["next_cursor"]
    params = {"limit": 2, "cursor": first["next_cursor"]}
    second = client.get("/v1/webhooks", headers=auth, params=params).json()
    assert second["next_cursor"] is None
    assert sorted(w["id"] for w in first["data"] + second["data"]) == sorted(made)
    assert_error(client.get("/v1/webhooks", headers=auth, params={"cursor": "!!"}), 422)


def test_scopes(client: TestClient, auth: dict[str, str]) -> None:
    key = client.post("/v1/keys", headers=auth, json={"scopes": ["read"]}).json()["key"]
    reader = {"Authorization": f"Bearer {key}"}
    assert_error(register(client, reader), 403, "forbidden")
    assert client.get("/v1/webhooks", headers=reader).status_code == 200


def submit_job(client: TestClient, auth: dict[str, str]) -> dict[str, Any]:
    dataset = upload(client, auth, csv_bytes(sample_rows(8))).json()
    body = {"base_model": "all-MiniLM-L6-v2", "dataset_id": dataset["id"]}
    r = client.post("/v1/jobs", headers=auth, json={**body, "strategy": {"name": "full"}})
    assert r.status_code == 201, r.text
    return dict(r.json())


def test_a_cancelled_job_records_one_delivery_per_subscribed_endpoint(
    client: TestClient, auth: dict[str, str], broker: redis.Redis
) -> None:
    import json

    everything = register(client, auth).json()
    succeeded_only = register(client, auth, events=["job.succeeded"]).json()
    job = submit_job(client, auth)
    assert client.post(f"/v1/jobs/{job['id']}/cancel", headers=auth).status_code == 200

    page = client.get(f"/v1/webhooks/{everything['id']}/deliveries", headers=auth).json()
    (delivery,) = page["data"]
    assert delivery["event_type"] == "job.cancelled" and delivery["status"] == "pending"
    assert delivery["attempts"] == 0 and delivery["webhook_id"] == everything["id"]
    assert delivery["next_attempt_at"] is not None and delivery["finished_at"] is None
    (stored,) = deliveries_in_db(everything["id"])
    event = json.loads(stored["body"])
    assert event["id"] == delivery["event_id"] and event["type"] == "job.cancelled"
    assert event["data"]["id"] == job["id"] and event["data"]["status"] == "cancelled"
    assert event["data"]["object"] == "job" and event["data"]["model_id"] is None
    assert deliveries_in_db(succeeded_only["id"]) == []
    # a message woke the maintenance queue after the commit, carrying the delivery's id
    queued = [json.loads(raw) for raw in broker.lrange("maintenance", 0, -1)]  # type: ignore[union-attr]
    assert [m["headers"]["task"] for m in queued] == ["tuneserve.webhook_deliver"]
    assert delivery["id"] in queued[0]["headers"]["argsrepr"]

    # cancelling again changes nothing and records nothing
    client.post(f"/v1/jobs/{job['id']}/cancel", headers=auth)
    assert len(deliveries_in_db(everything["id"])) == 1
    filtered = client.get(
        f"/v1/webhooks/{everything['id']}/deliveries", headers=auth, params={"status": "failed"}
    )
    assert filtered.json()["data"] == []


def test_a_sweep_records_its_end_once(client: TestClient, auth: dict[str, str]) -> None:
    import json

    hook = register(client, auth, events=["sweep.failed", "sweep.cancelled"]).json()
    dataset = upload(client, auth, csv_bytes(sample_rows())).json()
    sweep = create_sweep(client, auth, dataset["id"]).json()
    ids = [e["job_id"] for e in sweep["leaderboard"]]
    finish(ids[0], "failed", error_code="worker_lost")
    finish(ids[1], "cancelled")
    for _ in range(2):  # reading settles it; the second read changes nothing
        assert client.get(f"/v1/sweeps/{sweep['id']}", headers=auth).json()["status"] == "failed"
    (stored,) = deliveries_in_db(hook["id"])
    event = json.loads(stored["body"])
    assert event["type"] == "sweep.failed" and event["data"]["id"] == sweep["id"]
    assert event["data"]["error"]["code"] == "no_winner"

    other = create_sweep(client, auth, dataset["id"]).json()
    assert client.post(f"/v1/sweeps/{other['id']}/cancel", headers=auth).status_code == 200
    types = sorted(d["type"] for d in deliveries_in_db(hook["id"]))
    assert types == ["sweep.cancelled", "sweep.failed"]  # its jobs' events not subscribed


# --- delivery (worker/webhooks.py, run here in-process against a real receiver) -----------


def cancelled_job_delivery(
    client: TestClient, auth: dict[str, str], url: str, monkeypatch: pytest.MonkeyPatch, **env: str
) -> tuple[dict[str, Any], str]:
    """A webhook at ``url`` (private addresses allowed, plus ``env``) and the delivery of a
    cancelled job's event to it: (the webhook, the delivery's id)."""
    set_env(monkeypatch, webhook_allow_private="true", **env)
    hook = register(client, auth, url=url).json()
    job = submit_job(client, auth)
    client.post(f"/v1/jobs/{job['id']}/cancel", headers=auth)
    (delivery,) = deliveries_in_db(hook["id"])
    return hook, delivery["id"]


def make_due(delivery_id: str) -> None:
    """An hour passes: the delivery's next attempt is due (and its message long sent)."""
    from datetime import timedelta

    from app.db import session_scope, utcnow
    from app.webhooks.orm import WebhookDelivery

    with session_scope() as s:
        row = s.get(WebhookDelivery, delivery_id)
        assert row is not None and row.next_attempt_at is not None
        row.next_attempt_at = utcnow() - timedelta(seconds=1)
        row.woken_at = row.woken_at and row.woken_at - timedelta(hours=1)


def delivery(client: TestClient, auth: dict[str, str], hook: dict[str, Any]) -> dict[str, Any]:
    page = client.get(f"/v1/webhooks/{hook['id']}/deliveries", headers=auth).json()
    (row,) = page["data"]
    return dict(row)


def test_a_delivery_is_signed_and_sent_once(
    client: TestClient,
    auth: dict[str, str],
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from app.webhooks.signing import verify_signature
    from worker.webhooks import deliver_once

    hook, delivery_id = cancelled_job_delivery(client, auth, f"{receiver.url}/in", monkeypatch)
    assert deliver_once(delivery_id) == "delivered"
    assert deliver_once(delivery_id) == "skipped"  # a redelivered message: nothing happens
    (got,) = receiver.received()
    assert got.path == "/in"
    assert got.headers["content-type"] == "application/json"
    assert got.headers["tuneserve-event"] == "job.cancelled"
    assert got.headers["tuneserve-delivery"] == delivery_id
    assert got.headers["host"] == receiver.url.removeprefix("http://")
    assert verify_signature(hook["secret"], got.headers["tuneserve-signature"], got.body)
    assert not verify_signature("whsec_wrong", got.headers["tuneserve-signature"], got.body)
    assert json.loads(got.body)["type"] == "job.cancelled"
    row = delivery(client, auth, hook)
    assert (row["status"], row["attempts"], row["response_status"]) == ("delivered", 1, 200)
    assert row["last_error"] is None and row["finished_at"] and row["next_attempt_at"] is None


def test_failures_are_retried_with_backoff_then_fail(
    client: TestClient, auth: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from worker.webhooks import deliver_once, sweep_once

    failing = Receiver(statuses=(500, 302, 500))
    try:
        hook, delivery_id = cancelled_job_delivery(
            client,
            auth,
            failing.url,
            monkeypatch,
            webhook_max_attempts="3",
            webhook_backoff_s="[600]",
        )
        assert deliver_once(delivery_id) == "retrying"
        row = delivery(client, auth, hook)
        assert (row["status"], row["attempts"], row["response_status"]) == ("pending", 1, 500)
        assert "500" in row["last_error"]
        assert deliver_once(delivery_id) == "skipped"  # not due for 600 s
        assert sweep_once()["woken"] == 0

        make_due(delivery_id)
        assert deliver_once(delivery_id) == "retrying"  # the 302 is not followed
        assert delivery(client, auth, hook)["response_status"] == 302
        make_due(delivery_id)
        assert sweep_once()["woken"] == 1  # due, and not woken since it became due
        assert sweep_once()["woken"] == 0  # woken: its message is on its way
        assert deliver_once(delivery_id) == "failed"  # the third of three attempts
        row = delivery(client, auth, hook)
        assert (row["status"], row["attempts"], row["response_status"]) == ("failed", 3, 500)
        assert [r.path for r in failing.received()] == ["/", "/", "/"]  # never /elsewhere
    finally:
        failing.close()


def test_non_public_addresses_are_refused_at_delivery(
    client: TestClient,
    auth: dict[str, str],
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Registered while allowed, refused at every attempt once not: the resolved address is
    checked, so a public-looking name that points at loopback is refused too."""
    from worker.webhooks import deliver_once

    port = receiver.url.rsplit(":", 1)[1]
    hook, delivery_id = cancelled_job_delivery(
        client,
        auth,
        f"http://vm:{port}/",
        monkeypatch,  # /etc/hosts: vm is 127.0.0.1
    )
    set_env(monkeypatch, webhook_allow_private="false")
    assert deliver_once(delivery_id) == "retrying"
    row = delivery(client, auth, hook)
    assert "non-public" in row["last_error"] and row["response_status"] is None
    assert receiver.received() == []


def lose_a_worker(delivery_id: str, attempts: int) -> None:
    """A worker claimed the delivery and was lost: its lease has run out."""
    from datetime import timedelta

    from app.db import session_scope, utcnow
    from app.webhooks.orm import WebhookDelivery

    with session_scope() as s:
        row = s.get(WebhookDelivery, delivery_id)
        assert row is not None
        row.status, row.lease_token, row.attempts = "sending", "lost", attempts
        row.next_attempt_at = utcnow() - timedelta(seconds=1)


def test_a_lost_attempt_is_taken_over_and_its_late_result_dropped(
    client: TestClient,
    auth: dict[str, str],
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from app.config import get_settings
    from worker.webhooks import Outcome, deliver_once, record, sweep_once

    hook, delivery_id = cancelled_job_delivery(client, auth, receiver.url, monkeypatch)
    lose_a_worker(delivery_id, attempts=1)
    assert deliver_once(delivery_id) == "delivered"
    late = Outcome(status_code=500, error="late")
    assert record(delivery_id, "lost", 1, late, get_settings()) == "lease_lost"
    row = delivery(client, auth, hook)
    assert (row["status"], row["attempts"], row["response_status"]) == ("delivered", 2, 200)

    _, second = cancelled_job_delivery(client, auth, receiver.url, monkeypatch)
    lose_a_worker(second, attempts=get_settings().webhook_max_attempts)
    assert sweep_once()["failed"] == 1  # no attempt left for it: failed, not sent again
    assert deliver_once(second) == "skipped"
    assert len(receiver.received()) == 1
