"""The command line says what every option is for, and its version."""

from __future__ import annotations

import argparse
import subprocess
import sys

from app.cli import build_parser


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
    assert len(_parsers(build_parser())) >= 7  # tuneserve, up, migrate, keys and its commands


def test_version() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "app.cli", "--version"], capture_output=True, text=True, check=True
    )
    assert out.stdout.startswith("tuneserve ") and out.stdout.split()[1][0].isdigit()
