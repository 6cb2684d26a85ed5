"""Engine, sessions and the declarative base.

SQLite (the embedded default) runs in WAL mode with a busy timeout so that the API and the
workers can share one file; PostgreSQL is reached through psycopg 3.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, cast

from sqlalchemy import (
    CursorResult,
    DateTime,
    Engine,
    MetaData,
    Result,
    create_engine,
    event,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator

from app import json_text
from app.config import get_settings

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on every backend (SQLite stores naive values)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


def db_now(session: Session) -> datetime:
    """The database's clock (PostgreSQL), so leases mean the same on every machine.

    SQLite lives on this machine, so its clock is this machine's.
    """
    if session.get_bind().dialect.name == "postgresql":
        value = session.scalar(text("SELECT statement_timestamp()"))
        if isinstance(value, datetime):
            return value.astimezone(UTC)
    return utcnow()


def new_id(prefix: str) -> str:
    """Opaque, URL-safe, unguessable ids with a type prefix: ``ds_``, ``job_``, ``mdl_`` ..."""
    return f"{prefix}_{secrets.token_hex(12)}"


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        # as many pooled connections as the request threads can use at once: a connection
        # opened per request (overflow) costs four PRAGMAs each time
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30},
            pool_size=20,
            max_overflow=20,
            json_deserializer=json_text.loads,
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(
        url, pool_pre_ping=True, pool_size=10, max_overflow=10, json_deserializer=json_text.loads
    )


_engines: dict[str, Engine] = {}
_engines_lock = threading.Lock()


@lru_cache
def get_engine() -> Engine:
    """The process's engine. Concurrent first calls (a cold API process hit by many requests)
    share one engine and so one pool: ``lru_cache`` alone would let each build its own."""
    url = get_settings().sqlalchemy_url
    with _engines_lock:
        engine = _engines.get(url)
        if engine is None:
            engine = _engines[url] = make_engine(url)
        return engine


@lru_cache
def get_sessionmaker() -> sessionmaker[Session]:
    return sessionmaker(bind=get_engine(), expire_on_commit=False)


@contextmanager
def session_scope() -> Iterator[Session]:
    """A session that commits on success and rolls back on error (workers, CLI)."""
    session = get_sessionmaker()()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def after_failed_savepoint(session: Session) -> None:
    """Make ``session`` usable after an error inside ``begin_nested()``. PostgreSQL rolls back
    to the savepoint and keeps the transaction; SQLite's driver loses the savepoint with the
    whole transaction, which must then be rolled back (nothing before it in the transaction is
    kept: callers use this where nothing was written yet)."""
    if not session.is_active:
        session.rollback()


def rows_changed(result: Result[Any]) -> int:
    """Rows matched by an UPDATE/DELETE (the outcome of a conditional write)."""
    return int(cast("CursorResult[Any]", result).rowcount)
