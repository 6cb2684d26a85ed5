"""``tuneserve`` command line: ``up`` (the whole embedded service), ``migrate``, ``keys``."""

from __future__ import annotations

import argparse
import os
import sys

from app.config import get_settings


def _cmd_migrate(_: argparse.Namespace) -> int:
    from app.migrate import upgrade

    settings = get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.sqlalchemy_url)
    print(f"database at head: {_redact(settings.sqlalchemy_url)}")
    return 0


def _cmd_keys_create(args: argparse.Namespace) -> int:
    from app.db import session_scope
    from app.tenants.service import create_key

    with session_scope() as session:
        row, plain = create_key(session, tenant_name=args.tenant, key_name=args.name or "")
        tenant_id = row.tenant_id
    print(f"tenant: {args.tenant} ({tenant_id})")
    print(f"api key (shown once, store it now): {plain}")
    return 0


def _cmd_keys_revoke(args: argparse.Namespace) -> int:
    from app.db import session_scope
    from app.tenants.service import revoke_key

    with session_scope() as session:
        ok = revoke_key(session, key_id=args.key_id)
    print("revoked" if ok else "no such active key")
    return 0 if ok else 1


def _cmd_up(args: argparse.Namespace) -> int:
    from app.embedded import run_embedded

    return run_embedded(
        host=args.host,
        port=args.port,
        workers=not args.no_worker,
    )


def _redact(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


def build_parser() -> argparse.ArgumentParser:
    settings = get_settings()
    parser = argparse.ArgumentParser(prog="tuneserve", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="migrate, start Redis (embedded), the API and the workers")
    up.add_argument("--host", default=settings.host)
    up.add_argument("--port", type=int, default=settings.port)
    up.add_argument("--no-worker", action="store_true", help="start the API only")
    up.set_defaults(func=_cmd_up)

    migrate = sub.add_parser("migrate", help="apply database migrations")
    migrate.set_defaults(func=_cmd_migrate)

    keys = sub.add_parser("keys", help="manage API keys").add_subparsers(
        dest="keys_command", required=True
    )
    create = keys.add_parser("create", help="create an API key (shown once)")
    create.add_argument("--tenant", required=True)
    create.add_argument("--name", default="")
    create.set_defaults(func=_cmd_keys_create)
    revoke = keys.add_parser("revoke", help="revoke an API key by id")
    revoke.add_argument("key_id")
    revoke.set_defaults(func=_cmd_keys_revoke)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
