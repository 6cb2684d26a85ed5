"""Alembic: upgrade, downgrade and upgrade again on SQLite and PostgreSQL, and the migrated
schema equals the ORM metadata (autogenerate finds nothing to do)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, text

from tests.conftest import PG_ADMIN_URL, require_service


@pytest.fixture
def sqlite_db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'migrations.db'}"


@pytest.fixture
def postgres_db() -> Iterator[str]:
    require_service("PostgreSQL", "127.0.0.1", 5432)
    name = f"tuneserve_mig_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def fresh_db(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue(f"{request.param}_db"))


def _tables(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def _diff(url: str) -> list[object]:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from app.orm import Base

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})
            return list(compare_metadata(ctx, Base.metadata))
    finally:
        engine.dispose()


def _head_revision(url: str) -> str | None:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    finally:
        engine.dispose()


def test_upgrade_downgrade_upgrade(fresh_db: str) -> None:
    from alembic.script import ScriptDirectory

    from app.migrate import alembic_config, downgrade, upgrade
    from app.orm import Base

    expected = set(Base.metadata.tables)
    head = ScriptDirectory.from_config(alembic_config(fresh_db)).get_current_head()

    upgrade(fresh_db)
    assert _tables(fresh_db) == expected | {"alembic_version"}
    assert _head_revision(fresh_db) == head
    assert _diff(fresh_db) == []

    downgrade(fresh_db, "base")
    assert _tables(fresh_db) - {"alembic_version"} == set()

    upgrade(fresh_db)
    assert _tables(fresh_db) == expected | {"alembic_version"}
    assert _head_revision(fresh_db) == head
    assert _diff(fresh_db) == []


def test_each_step_down_and_up(fresh_db: str) -> None:
    """Every revision downgrades to its parent and upgrades back."""
    from alembic.script import ScriptDirectory

    from app.migrate import alembic_config, downgrade, upgrade

    script = ScriptDirectory.from_config(alembic_config(fresh_db))
    revisions = [r.revision for r in reversed(list(script.walk_revisions()))]
    assert len(revisions) >= 2
    for rev in revisions:
        upgrade(fresh_db, rev)
        assert _head_revision(fresh_db) == rev
    for rev in reversed(revisions[:-1]):
        downgrade(fresh_db, rev)
        assert _head_revision(fresh_db) == rev
    upgrade(fresh_db)
    assert _diff(fresh_db) == []


def test_single_head() -> None:
    from alembic.script import ScriptDirectory

    from app.migrate import alembic_config

    assert len(ScriptDirectory.from_config(alembic_config("sqlite://")).get_heads()) == 1
