"""Webhook signatures, Stripe-style: ``Tuneserve-Signature: t=<unix time>,v1=<hex>``.

``v1`` is the hex HMAC-SHA256, keyed with the endpoint's secret, of ``f"{t}.{body}"``: the
timestamp is signed with the body, so a receiver that refuses old timestamps (five minutes is
the usual tolerance) refuses replays. Standard library only: receivers (and the SDK) can copy
or import this module without the service's dependencies.

    from app.webhooks.signing import verify_signature

    if not verify_signature(secret, request.headers["Tuneserve-Signature"], raw_body):
        return 400
"""

from __future__ import annotations

import hashlib
import hmac
import time

SIGNATURE_HEADER = "Tuneserve-Signature"
EVENT_HEADER = "Tuneserve-Event"
DELIVERY_HEADER = "Tuneserve-Delivery"
#: how old a signature's timestamp a receiver should accept, in seconds
DEFAULT_TOLERANCE_S = 300


def _as_bytes(value: str | bytes) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else value


def compute(secret: str | bytes, timestamp: int, body: str | bytes) -> str:
    """The hex HMAC-SHA256 of ``f"{timestamp}.{body}"`` keyed with ``secret``."""
    message = str(timestamp).encode("ascii") + b"." + _as_bytes(body)
    return hmac.new(_as_bytes(secret), message, hashlib.sha256).hexdigest()


def sign(secret: str | bytes, body: str | bytes, timestamp: int | None = None) -> str:
    """The ``Tuneserve-Signature`` header's value for ``body``, signed now (or at
    ``timestamp``)."""
    t = int(time.time()) if timestamp is None else int(timestamp)
    return f"t={t},v1={compute(secret, t, body)}"


def parse(header: str) -> tuple[int, list[str]] | None:
    """``(t, [v1 signatures])`` of a header; None when it has no timestamp or no ``v1``.
    Several ``v1`` entries are allowed (a receiver rotating its secret may get two)."""
    timestamp: int | None = None
    signatures: list[str] = []
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep:
            continue
        if key == "t":
            try:
                timestamp = int(value)
            except ValueError:
                return None
        elif key == "v1":
            signatures.append(value)
    if timestamp is None or not signatures:
        return None
    return timestamp, signatures


def verify_signature(
    secret: str | bytes,
    header: str,
    body: str | bytes,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
    *,
    now: float | None = None,
) -> bool:
    """True when ``header`` (``Tuneserve-Signature``) signs ``body`` (the raw request body,
    exactly as received) with ``secret``, at a time no more than ``tolerance_s`` seconds from
    now (either way); False otherwise. Compares in constant time."""
    parsed = parse(header)
    if parsed is None:
        return False
    timestamp, signatures = parsed
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance_s:
        return False
    expected = compute(secret, timestamp, body)
    wanted = expected.encode("ascii")
    return any(
        hmac.compare_digest(wanted, candidate.encode("utf-8", "replace"))
        for candidate in signatures
    )
