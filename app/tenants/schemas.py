from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from app.tenants import scopes as scope_rules
from app.tenants.orm import ApiKey

Scope = Literal["admin", "train", "infer", "read"]


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field("", max_length=200, description="A label for people; not secret.")
    scopes: list[Scope] = Field(
        min_length=1,
        max_length=4,
        description="admin: everything; train: uploads, jobs, sweeps, deletes; infer: predict "
        "only; read: every GET but the key list.",
    )
    expires_in_days: int | None = Field(
        None, ge=1, le=3650, description="The key stops working this many days from now."
    )


class KeyRead(BaseModel):
    id: str
    tenant_id: str
    name: str
    prefix: str = Field(description="The first characters of the key, to recognise it.")
    scopes: list[str]
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None = Field(description="To the minute.")
    revoked_at: datetime | None

    @classmethod
    def from_row(cls, row: ApiKey) -> KeyRead:
        return cls(
            id=row.id,
            tenant_id=row.tenant_id,
            name=row.name,
            prefix=row.prefix,
            scopes=list(scope_rules.decode(row.scopes)),
            created_at=row.created_at,
            expires_at=row.expires_at,
            last_used_at=row.last_used_at,
            revoked_at=row.revoked_at,
        )


class KeyCreated(KeyRead):
    key: str = Field(description="The API key itself: shown this once, never again.")


class KeyList(BaseModel):
    data: list[KeyRead]
