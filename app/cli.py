"""The server's commands: ``up`` (the whole embedded service), ``migrate``, ``keys``."""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import sys

from app.cli_keys import add_keys_commands
from app.config import get_settings


def _cmd_migrate(_: argparse.Namespace) -> int:
    from app.migrate import upgrade

    settings = get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.sqlalchemy_url)
    print(f"database at head: {_redact(settings.sqlalchemy_url)}")
    return 0


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


def _version() -> str:
    try:
        return importlib.metadata.version("tuneserve")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


def build_parser() -> argparse.ArgumentParser:
    """The server's commands alone (``python -m app.cli``); the ``tuneserve`` command adds the
    client's (``tuneserve.cli``)."""
    parser = argparse.ArgumentParser(prog="tuneserve", description=__doc__)
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {_version()}", help="print the version"
    )
    add_server_commands(parser.add_subparsers(dest="command", required=True))
    return parser


def add_server_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``up``, ``migrate`` and ``keys``: the commands that run or administer the service on
    this machine (the client's commands talk to it over HTTP)."""
    settings = get_settings()
    up = sub.add_parser("up", help="migrate, start Redis (embedded), the API and the workers")
    up.add_argument(
        "--host",
        default=settings.host,
        help=f"address the API listens on (default {settings.host}; TUNESERVE_HOST)",
    )
    up.add_argument(
        "--port",
        type=int,
        default=settings.port,
        help=f"port the API listens on (default {settings.port}; TUNESERVE_PORT)",
    )
    up.add_argument("--no-worker", action="store_true", help="start the API only")
    up.set_defaults(func=_cmd_up)

    migrate = sub.add_parser("migrate", help="apply database migrations")
    migrate.set_defaults(func=_cmd_migrate)

    add_keys_commands(sub)


def prepare_process() -> None:
    """What every server command needs before it runs."""
    os.umask(0o077)  # the data directory's files (SQLite, keys, artifacts): this user only
    os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main(argv: list[str] | None = None) -> int:
    prepare_process()
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
