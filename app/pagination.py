"""Keyset pagination: ``{"data": [...], "next_cursor": null | "..."}`` ordered newest first."""

from __future__ import annotations

import base64
import json
from datetime import datetime
from typing import Any, Protocol, TypeVar

from sqlalchemy import Select, and_, or_
from sqlalchemy.orm import InstrumentedAttribute

from app.errors import InvalidInput


class _Keyed(Protocol):
    @property
    def created_at(self) -> datetime: ...
    @property
    def id(self) -> str: ...


RowT = TypeVar("RowT", bound=_Keyed)


def page(rows: list[RowT], limit: int) -> tuple[list[RowT], str | None]:
    """The first ``limit`` of the ``limit + 1`` rows :func:`paginate` fetched, and the cursor
    of the next page (None on the last one)."""
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    return rows, encode_cursor(rows[-1].created_at, rows[-1].id)


def encode_cursor(created_at: datetime, row_id: str) -> str:
    raw = json.dumps([created_at.isoformat(), row_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        created, row_id = json.loads(base64.urlsafe_b64decode(padded))
        row_id = str(row_id)
        row_id.encode("utf-8")  # a lone surrogate cannot be sent to the database
        return datetime.fromisoformat(created), row_id
    except (ValueError, TypeError, RecursionError) as exc:  # UnicodeError is a ValueError
        raise InvalidInput("Invalid cursor.", code="invalid_cursor") from exc


def paginate(
    stmt: Select[Any],
    *,
    created_col: InstrumentedAttribute[datetime],
    id_col: InstrumentedAttribute[str],
    cursor: str | None,
    limit: int,
) -> Select[Any]:
    if cursor:
        created, row_id = decode_cursor(cursor)
        stmt = stmt.where(or_(created_col < created, and_(created_col == created, id_col < row_id)))
    return stmt.order_by(created_col.desc(), id_col.desc()).limit(limit + 1)
