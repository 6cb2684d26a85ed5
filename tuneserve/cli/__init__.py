"""The ``tuneserve`` command: the client's commands over HTTP (on the SDK) and the server's.

    tuneserve datasets upload|list|show|delete     tuneserve jobs create|list|show|cancel|watch
    tuneserve sweeps create|list|show|cancel       tuneserve models list|predict|export
    tuneserve up | migrate | keys ...              (the server on this machine: app.cli)

The client's commands find the service in ``--url``/``--api-key``, ``TUNESERVE_URL``/
``TUNESERVE_API_KEY`` or the config file (:mod:`tuneserve.cli.settings`); ``--json`` prints
JSON for scripts. An API error prints ``error: <code>: <message>`` and exits 4.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from tuneserve._version import __version__

EXIT_CLIENT_ERROR = 4
Handler = Callable[[Any, argparse.Namespace], int]


def _client_options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--url", default=None, help="the service (TUNESERVE_URL; default http://127.0.0.1:8000)"
    )
    common.add_argument("--api-key", default=None, help="an API key (TUNESERVE_API_KEY)")
    common.add_argument("--json", action="store_true", help="print JSON (for scripts)")
    return common


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tuneserve", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {__version__}", help="print the version"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    from tuneserve.cli.commands import add_client_commands

    add_client_commands(sub, _client_options())
    try:
        from app.cli import add_server_commands
    except ImportError:  # the SDK without the service: client commands only
        return parser
    add_server_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Handler | None = getattr(args, "client_handler", None)
    if handler is None:  # a server command
        from app.cli import prepare_process

        prepare_process()
        return int(args.func(args))
    from tuneserve.cli.run import run_client_command

    return run_client_command(handler, args)


if __name__ == "__main__":
    sys.exit(main())
