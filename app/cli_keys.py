"""``tuneserve keys create|list|revoke|rotate``: API keys, on the database directly.

Every command prints key ids; ``create`` and ``rotate`` print the key itself, once.
"""

from __future__ import annotations

import argparse
from datetime import timedelta

from app.tenants.scopes import SCOPES


def _cmd_create(args: argparse.Namespace) -> int:
    from app.db import session_scope, utcnow
    from app.tenants.service import create_key

    expires = utcnow() + timedelta(days=args.expires_in_days) if args.expires_in_days else None
    with session_scope() as session:
        row, plain = create_key(
            session,
            tenant_name=args.tenant,
            key_name=args.name,
            scopes=args.scope or ["admin"],
            expires_at=expires,
        )
        key_id, tenant_id, scopes = row.id, row.tenant_id, row.scopes
    print(f"tenant: {args.tenant} ({tenant_id})")
    until = expires.isoformat() if expires else "never"
    print(f"key id: {key_id}  scopes: {scopes}  expires: {until}")
    print(f"api key (shown once, store it now): {plain}")
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from app.db import session_scope
    from app.tenants.service import list_keys

    table = Table("id", "tenant", "name", "prefix", "scopes", "created", "expires", "last used")
    if args.all:
        table.add_column("revoked")
    with session_scope() as session:
        tenant_id = None
        if args.tenant:
            from sqlalchemy import select

            from app.tenants.orm import Tenant

            tenant_id = session.scalar(select(Tenant.id).where(Tenant.name == args.tenant))
            if tenant_id is None:
                print(f"no tenant named {args.tenant!r}")
                return 1
        for key, tenant_name in list_keys(session, tenant_id=tenant_id, include_revoked=args.all):
            cells = [
                key.id,
                tenant_name,
                key.name,
                key.prefix + "…",
                key.scopes,
                _when(key.created_at),
                _when(key.expires_at) or "never",
                _when(key.last_used_at) or "never",
            ]
            if args.all:
                cells.append(_when(key.revoked_at))
            table.add_row(*cells)
    Console(width=200).print(table)
    return 0


def _when(value: object) -> str:
    return "" if value is None else str(value)[:19]


def _cmd_revoke(args: argparse.Namespace) -> int:
    from app.db import session_scope
    from app.errors import NotFound
    from app.tenants.service import revoke_key

    try:
        with session_scope() as session:
            revoke_key(session, key_id=args.key_id)
    except NotFound:
        print(f"no active key with id {args.key_id}")
        return 1
    print(f"revoked {args.key_id}")
    return 0


def _cmd_rotate(args: argparse.Namespace) -> int:
    from app.db import session_scope
    from app.errors import NotFound
    from app.tenants.service import rotate_key

    try:
        with session_scope() as session:
            row, plain = rotate_key(session, key_id=args.key_id)
            new_id = row.id
    except NotFound:
        print(f"no active key with id {args.key_id}")
        return 1
    print(f"revoked {args.key_id}; new key id: {new_id}")
    print(f"api key (shown once, store it now): {plain}")
    return 0


def add_keys_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    keys = sub.add_parser("keys", help="manage API keys").add_subparsers(
        dest="keys_command", required=True
    )
    create = keys.add_parser("create", help="create an API key (shown once) and print its id")
    create.add_argument("--tenant", required=True, help="tenant name (created if new)")
    create.add_argument("--name", default="", help="a label for the key")
    create.add_argument(
        "--scope",
        action="append",
        choices=SCOPES,
        help="a scope of the key (repeat for several; default admin): admin is everything, "
        "train uploads and tunes, infer only predicts, read only reads",
    )
    create.add_argument(
        "--expires-in-days", type=int, default=None, help="the key stops working after this"
    )
    create.set_defaults(func=_cmd_create)

    listing = keys.add_parser("list", help="list keys (ids, scopes, expiry, last use)")
    listing.add_argument("--tenant", default=None, help="only this tenant's keys")
    listing.add_argument("--all", action="store_true", help="revoked keys too")
    listing.set_defaults(func=_cmd_list)

    revoke = keys.add_parser("revoke", help="revoke an API key by id")
    revoke.add_argument("key_id", help="the key's id (tuneserve keys list shows it)")
    revoke.set_defaults(func=_cmd_revoke)

    rotate = keys.add_parser(
        "rotate", help="replace a key by a new one (same tenant, name, scopes, expiry)"
    )
    rotate.add_argument("key_id", help="the key's id (tuneserve keys list shows it)")
    rotate.set_defaults(func=_cmd_rotate)
