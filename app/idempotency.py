"""Idempotency-Key replay for the resources a POST creates (jobs, sweeps).

A request with a key its tenant used before gets the row that first request created, provided
it is the same request; another body with that key is a 409 ``idempotency_key_reused``. Two
concurrent requests with one key both insert; the unique ``(tenant_id, idempotency_key)``
constraint lets one win, and the other replays the winner.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.db import after_failed_savepoint
from app.errors import Conflict


class Keyed(Protocol):
    """A row a request with an Idempotency-Key creates."""

    id: str
    tenant_id: str
    idempotency_key: str | None


R = TypeVar("R", bound=Keyed)


@dataclass(frozen=True)
class Idempotent(Generic[R]):
    """One creating request: which table, whose key, and how to tell the same request."""

    model: type[R]
    tenant_id: str
    key: str | None
    #: whether a row found by the key was created by this very request
    same_request: Callable[[R], bool]
    #: the field naming the found row in a 409's details (``job_id``, ``sweep_id``)
    id_field: str

    def replay(self, session: Session) -> R | None:
        """The row an earlier request with this key created; None when there is none (or no
        key). Raises Conflict when that request was another one."""
        if not self.key:
            return None
        existing = session.scalar(
            select(self.model).filter_by(tenant_id=self.tenant_id, idempotency_key=self.key)
        )
        if existing is None:
            return None
        if not self.same_request(existing):
            raise Conflict(
                "This Idempotency-Key was used with a different request body.",
                code="idempotency_key_reused",
                details={self.id_field: existing.id},
            )
        return existing

    def insert(self, session: Session, row: R) -> R | None:
        """Add and flush ``row`` in a savepoint. None when it was inserted; the winner's row
        (as :meth:`replay`) when a concurrent request with the same key inserted first."""
        session.add(row)
        try:
            with session.begin_nested():
                session.flush()
        except IntegrityError:
            after_failed_savepoint(session)
            existing = self.replay(session)
            if existing is None:
                raise
            return existing
        return None
