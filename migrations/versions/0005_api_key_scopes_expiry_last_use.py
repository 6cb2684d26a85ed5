"""api key scopes, expiry and last use

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 17:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.db

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        # keys made before scopes existed could do everything: they stay admin keys
        batch.add_column(
            sa.Column("scopes", sa.String(length=100), nullable=False, server_default="admin")
        )
        batch.add_column(sa.Column("expires_at", app.db.UTCDateTime(), nullable=True))
        batch.add_column(sa.Column("last_used_at", app.db.UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("last_used_at")
        batch.drop_column("expires_at")
        batch.drop_column("scopes")
