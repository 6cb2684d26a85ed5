"""The command line says what every option is for, and its version."""

from __future__ import annotations

import argparse
import subprocess
import sys

from tuneserve.cli import build_parser


def _parsers(parser: argparse.ArgumentParser) -> list[tuple[str, argparse.ArgumentParser]]:
    found = [(parser.prog, parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                found += _parsers(child)
    return found


def test_every_option_and_argument_has_help() -> None:
    missing = [
        f"{prog}: {action.option_strings or action.dest}"
        for prog, parser in _parsers(build_parser())
        for action in parser._actions
        if not isinstance(action, argparse._SubParsersAction) and not action.help
    ]
    assert missing == []
    names = {prog for prog, _ in _parsers(build_parser())}
    for command in ("up", "keys create", "datasets upload", "jobs watch", "models export"):
        assert f"tuneserve {command}" in names


def test_version() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "tuneserve.cli", "--version"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.startswith("tuneserve ") and out.stdout.split()[1][0].isdigit()
