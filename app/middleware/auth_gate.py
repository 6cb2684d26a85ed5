"""Authenticate, authorize and rate-limit every ``/v1`` request before its route runs.

This is an ASGI middleware, not a FastAPI dependency, because FastAPI reads and parses a
request's body before it resolves dependencies: a 200 MB JSON body without a key would be
parsed before the 401. Here, nothing of the body is read until the caller is known:

1. the ``Authorization`` header is checked for shape (``Bearer <key>``);
2. a key found in the last second is taken from memory; otherwise the client address's failed
   attempts are checked (429 past ``TUNESERVE_AUTH_FAILURES_PER_MINUTE``) and the key is
   looked up by its SHA-256 (one indexed query, in a worker thread); a failure is counted;
3. the key's scopes must allow the route (403 otherwise, :mod:`app.tenants.scopes`);
4. the key's request rate must be within its limit (429 with ``Retry-After``).

The caller is left in the request's state for the routes (:func:`app.deps.get_tenant`).
"""

from __future__ import annotations

import asyncio
import logging

from anyio import to_thread
from sqlalchemy.exc import OperationalError
from starlette.types import ASGIApp, Receive, Scope, Send

from app.config import Settings
from app.db import session_scope
from app.error_handlers import error_response
from app.errors import AppError, Forbidden, RateLimited, ServiceUnavailable, Unauthorized
from app.limits import rate
from app.middleware.principals import PrincipalCache
from app.tenants import scopes
from app.tenants.service import Principal, hash_key, principal_for_hash

log = logging.getLogger(__name__)

PRINCIPAL_STATE = "principal"


def is_authenticated_path(path: str) -> bool:
    return path == "/v1" or path.startswith("/v1/")


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return bytes(value).decode("latin-1")
    return None


def bearer_key(authorization: str | None) -> str:
    """The key of ``Authorization: Bearer <key>``, or ``Unauthorized``."""
    if not authorization:
        raise Unauthorized("Missing API key: send 'Authorization: Bearer <key>'.")
    scheme, _, key = authorization.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise Unauthorized("Malformed Authorization header: expected 'Bearer <key>'.")
    return key.strip()


def _lookup(key_hash: str) -> Principal | None:
    with session_scope() as session:
        return principal_for_hash(session, key_hash=key_hash)


class AuthGate:
    def __init__(self, app: ASGIApp, *, settings: Settings, principals: PrincipalCache) -> None:
        self.app = app
        self.settings = settings
        self.principals = principals
        # one lookup per key at a time: a burst of requests with a key not yet remembered
        # (a client's first 256 predicts) waits on one query, not on 256
        self._lookups: dict[str, asyncio.Future[Principal | None]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_authenticated_path(scope["path"]):
            await self.app(scope, receive, send)
            return
        try:
            principal = await self._authenticate(scope)
            needed = scopes.required_scope(scope["method"], scope["path"])
            if not scopes.allows(principal.scopes, needed):
                raise Forbidden(
                    f"This API key lacks the {needed!r} scope this request needs "
                    f"(it has: {', '.join(principal.scopes)}).",
                    details={"required_scope": needed, "key_scopes": list(principal.scopes)},
                )
            wait_s = await rate.key_wait_s(
                principal.key_id,
                per_minute=self.settings.rate_limit_per_minute,
                burst=self.settings.rate_limit_burst,
            )
            if wait_s > 0:
                raise RateLimited(
                    f"Rate limit of {self.settings.rate_limit_per_minute} requests per minute "
                    "for this API key reached; retry after the time in Retry-After.",
                    retry_after_s=wait_s,
                )
        except AppError as exc:
            await error_response(exc)(scope, receive, send)
            return
        scope.setdefault("state", {})[PRINCIPAL_STATE] = principal
        await self.app(scope, receive, send)

    async def _authenticate(self, scope: Scope) -> Principal:
        key_hash = hash_key(bearer_key(_header(scope, b"authorization")))
        found = self.principals.get(key_hash)
        if found is not None:
            return found
        client = scope.get("client")
        address = str(client[0]) if client else "unknown"
        limit = self.settings.auth_failures_per_minute
        wait_s = await rate.auth_failure_wait_s(address, per_minute=limit)
        if wait_s > 0:
            raise RateLimited(
                f"Too many failed authentications from this address ({limit} a minute); "
                "retry after the time in Retry-After.",
                code="too_many_auth_failures",
                retry_after_s=wait_s,
            )
        try:
            found = await self._lookup_once(key_hash)
        except OperationalError as exc:
            log.warning("key lookup failed: %s", type(exc).__name__)
            raise ServiceUnavailable(
                "The database is unavailable; try again shortly.", code="database_unavailable"
            ) from exc
        if found is None:
            await rate.note_auth_failure(address)
            raise Unauthorized("Invalid, revoked or expired API key.")
        self.principals.put(key_hash, found)
        return found

    async def _lookup_once(self, key_hash: str) -> Principal | None:
        pending = self._lookups.get(key_hash)
        if pending is None:
            pending = asyncio.ensure_future(to_thread.run_sync(_lookup, key_hash))
            self._lookups[key_hash] = pending
            pending.add_done_callback(lambda _: self._lookups.pop(key_hash, None))
        return await asyncio.shield(pending)
