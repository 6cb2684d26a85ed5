"""Webhook deliveries, from the maintenance worker's side (docs/webhooks.md).

The row is the truth; a message only wakes a worker. :func:`deliver_once` claims a due
delivery with one conditional UPDATE (``pending`` or an expired ``sending``, due, attempts
left -> ``sending`` with a fresh lease token; its ``next_attempt_at`` becomes the lease's
expiry), so two workers never send one delivery at once and a redelivered message is a no-op.
It then resolves the URL's host, refuses non-public addresses (unless
``TUNESERVE_WEBHOOK_ALLOW_PRIVATE``), connects to the checked address itself (no second
lookup to rebind), POSTs the signed body without following redirects, and records the outcome
fenced by its token: ``delivered`` on a 2xx, else ``pending`` again after the backoff, or
``failed`` once the attempts are spent.

:func:`sweep_once` (beat, every ``webhook_sweep_interval_s``) wakes what is due and was not
woken since (retries; messages lost), fails what a lost worker left with no attempts left,
and drops finished deliveries past the retention.
"""

from __future__ import annotations

import logging
import socket
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import Session

from app.config import Settings, get_settings
from app.db import db_now, rows_changed, session_scope
from app.tasks import WEBHOOK_DELIVER_TASK, enqueue_after_commit
from app.webhooks.addresses import literal_address, refused
from app.webhooks.orm import WebhookDelivery, WebhookEndpoint
from app.webhooks.signing import DELIVERY_HEADER, EVENT_HEADER, SIGNATURE_HEADER, sign

log = logging.getLogger(__name__)

#: a message sent this long ago whose delivery is still due is sent again
REWAKE_AFTER_S = 60.0
#: most deliveries one sweep wakes
SWEEP_BATCH = 500
MAX_ERROR_CHARS = 500
_ACTIVE = ("pending", "sending")


@dataclass(frozen=True)
class Outcome:
    status_code: int | None
    error: str | None

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def backoff_s(settings: Settings, attempts: int) -> float:
    """Seconds before the retry that follows attempt number ``attempts`` (1-based)."""
    steps = settings.webhook_backoff_s
    return float(steps[min(attempts, len(steps)) - 1])


def lease_s(settings: Settings) -> float:
    return 3 * settings.webhook_timeout_s + 30


# --- one delivery -------------------------------------------------------------------------


def deliver_once(delivery_id: str) -> str:
    """Claim, send and record one attempt of ``delivery_id``; what happened, in a word."""
    settings = get_settings()
    token = uuid.uuid4().hex
    with session_scope() as s:
        now = db_now(s)
        claimed = s.execute(
            update(WebhookDelivery)
            .where(
                WebhookDelivery.id == delivery_id,
                WebhookDelivery.status.in_(_ACTIVE),
                WebhookDelivery.next_attempt_at <= now,
                WebhookDelivery.attempts < settings.webhook_max_attempts,
            )
            .values(
                status="sending",
                lease_token=token,
                attempts=WebhookDelivery.attempts + 1,
                last_attempt_at=now,
                next_attempt_at=now + timedelta(seconds=lease_s(settings)),
            )
            .execution_options(synchronize_session=False)
        )
        if rows_changed(claimed) != 1:
            return "skipped"
        row = s.execute(
            select(
                WebhookDelivery.body,
                WebhookDelivery.event_type,
                WebhookDelivery.attempts,
                WebhookEndpoint.url,
                WebhookEndpoint.secret,
            )
            .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
            .where(WebhookDelivery.id == delivery_id)
        ).one_or_none()
        if row is None:  # its endpoint is being deleted
            return "skipped"
    outcome = post(
        row.url,
        row.body,
        headers={
            "Content-Type": "application/json",
            "User-Agent": "tuneserve-webhooks/1",
            EVENT_HEADER: row.event_type,
            DELIVERY_HEADER: delivery_id,
            SIGNATURE_HEADER: sign(row.secret, row.body),
        },
        settings=settings,
    )
    return record(delivery_id, token, row.attempts, outcome, settings)


def record(
    delivery_id: str, token: str, attempts: int, outcome: Outcome, settings: Settings
) -> str:
    """The attempt's outcome, written only while ``token`` still holds the delivery."""
    with session_scope() as s:
        now = db_now(s)
        values: dict[str, Any] = {
            "lease_token": None,
            "response_status": outcome.status_code,
            "last_error": outcome.error[:MAX_ERROR_CHARS] if outcome.error else None,
        }
        if outcome.ok:
            status = "delivered"
            values.update(status=status, finished_at=now, next_attempt_at=None)
        elif attempts >= settings.webhook_max_attempts:
            status = "failed"
            values.update(status=status, finished_at=now, next_attempt_at=None)
        else:
            status = "retrying"
            retry_at = now + timedelta(seconds=backoff_s(settings, attempts))
            values.update(status="pending", next_attempt_at=retry_at)
        done = s.execute(
            update(WebhookDelivery)
            .where(
                WebhookDelivery.id == delivery_id,
                WebhookDelivery.lease_token == token,
                WebhookDelivery.status == "sending",
            )
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        if rows_changed(done) != 1:
            return "lease_lost"  # it took too long, or its endpoint was deleted meanwhile
    if not outcome.ok:
        log.info("webhook %s attempt %d: %s", delivery_id, attempts, outcome.error)
    return status


def resolve(url: str, settings: Settings) -> str:
    """The address to connect to for ``url``'s host; ValueError naming why none may be used.
    Every address the name resolves to must be public (unless private ones are allowed)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    literal = literal_address(host)
    if literal is not None:
        addresses = [literal]
    else:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as exc:
            raise ValueError(f"could not resolve {host}: {exc}") from exc
        addresses = [a for a in (literal_address(str(i[4][0])) for i in infos) if a is not None]
    if not addresses:
        raise ValueError(f"{host} has no address")
    if not settings.webhook_allow_private:
        bad = [str(a) for a in addresses if refused(a)]
        if bad:
            raise ValueError(
                f"{host} resolves to a non-public address ({bad[0]}); refused "
                "(TUNESERVE_WEBHOOK_ALLOW_PRIVATE allows it)"
            )
    return str(addresses[0])


def post(url: str, body: str, *, headers: dict[str, str], settings: Settings) -> Outcome:
    """POST ``body`` to ``url`` at the address :func:`resolve` checked; never raises."""
    import httpx

    try:
        address = resolve(url, settings)
        target = httpx.URL(url)
        pinned = target.copy_with(host=address)
        sent = {**headers, "Host": target.netloc.decode("ascii")}
        extensions = (
            {"sni_hostname": target.raw_host.decode("ascii")} if target.scheme == "https" else {}
        )
        with (
            httpx.Client(
                timeout=settings.webhook_timeout_s, follow_redirects=False, trust_env=False
            ) as client,
            client.stream(
                "POST", pinned, content=body.encode(), headers=sent, extensions=extensions
            ) as response,
        ):
            code = response.status_code  # the body is never read
    except ValueError as exc:
        return Outcome(None, str(exc))
    except httpx.HTTPError as exc:
        return Outcome(None, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
    except Exception as exc:  # a broken URL or TLS setup must not kill the worker
        return Outcome(None, f"{type(exc).__name__}: {exc}")
    if 200 <= code < 300:
        return Outcome(code, None)
    return Outcome(code, f"the receiver answered HTTP {code}")


# --- the sweep ------------------------------------------------------------------------------


def sweep_once() -> dict[str, int]:
    """Wake due deliveries, fail those out of attempts, drop old finished ones."""
    settings = get_settings()
    with session_scope() as s:
        now = db_now(s)
        out_of_attempts = s.execute(
            update(WebhookDelivery)
            .where(
                WebhookDelivery.status.in_(_ACTIVE),
                WebhookDelivery.next_attempt_at <= now,
                WebhookDelivery.attempts >= settings.webhook_max_attempts,
            )
            .values(
                status="failed",
                lease_token=None,
                finished_at=now,
                next_attempt_at=None,
                last_error="no attempts left (the worker of the last one was lost)",
            )
            .execution_options(synchronize_session=False)
        )
        due = _due(s, now)
        if due:
            s.execute(
                update(WebhookDelivery)
                .where(WebhookDelivery.id.in_(due))
                .values(woken_at=now)
                .execution_options(synchronize_session=False)
            )
            for delivery_id in due:
                enqueue_after_commit(s, WEBHOOK_DELIVER_TASK, [delivery_id])
        pruned = s.execute(
            delete(WebhookDelivery)
            .where(
                WebhookDelivery.status.in_(("delivered", "failed")),
                WebhookDelivery.finished_at < now - timedelta(days=settings.webhook_retention_days),
            )
            .execution_options(synchronize_session=False)
        )
    report = {"woken": len(due), "failed": rows_changed(out_of_attempts)}
    report["pruned"] = rows_changed(pruned)
    if any(report.values()):
        log.info("webhook sweep: %s", report)
    return report


def _due(s: Session, now: datetime) -> list[str]:
    """Due deliveries not woken since they became due (nor in the last ``REWAKE_AFTER_S``)."""
    rewake = now - timedelta(seconds=REWAKE_AFTER_S)
    return list(
        s.scalars(
            select(WebhookDelivery.id)
            .where(
                WebhookDelivery.status.in_(_ACTIVE),
                WebhookDelivery.next_attempt_at <= now,
                or_(
                    WebhookDelivery.woken_at.is_(None),
                    WebhookDelivery.woken_at < WebhookDelivery.next_attempt_at,
                    WebhookDelivery.woken_at < rewake,
                ),
            )
            .order_by(WebhookDelivery.next_attempt_at)
            .limit(SWEEP_BATCH)
        )
    )
