"""Running one client command: a client from the resolved settings, errors as exit status 4."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from tuneserve.cli.settings import ConfigError, resolve
from tuneserve.client import Client
from tuneserve.errors import TuneserveError

EXIT_CLIENT_ERROR = 4


def run_client_command(handler: Any, args: argparse.Namespace) -> int:
    try:
        target = resolve(args.url, args.api_key)
        with Client(target.url, target.api_key) as client:
            return int(handler(client, args))
    except TuneserveError as exc:
        return _fail(args, exc.message, exc.code, exc.details)
    except (ConfigError, OSError, ValueError) as exc:  # a bad path, flag value or config file
        return _fail(args, str(exc), "invalid_argument", None)
    except KeyboardInterrupt:
        return 130


def _fail(args: argparse.Namespace, message: str, code: str | None, details: Any) -> int:
    if getattr(args, "json", False):
        error = {"code": code, "message": message, "details": details}
        json.dump({"error": error}, sys.stderr, ensure_ascii=False)
        sys.stderr.write("\n")
    else:
        print(f"error: {code}: {message}" if code else f"error: {message}", file=sys.stderr)
    return EXIT_CLIENT_ERROR
