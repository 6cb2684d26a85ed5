"""What the commands print: JSON for scripts (``--json``), rich tables for people."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from typing import Any

from pydantic import BaseModel
from rich.console import Console
from rich.table import Table


def plain(value: Any) -> Any:
    """``value`` as JSON-ready data (pydantic models dumped, in order)."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    return value


def emit_json(value: Any) -> None:
    json.dump(plain(value), sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")


def table(title: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    grid = Table(title=title, title_justify="left")
    for column in columns:
        grid.add_column(column)
    for row in rows:
        grid.add_row(*("" if cell is None else str(cell) for cell in row))
    Console().print(grid)


def fields(title: str, values: dict[str, Any]) -> None:
    """One object as a two-column table; nested values as compact JSON."""
    rows = []
    for key, value in values.items():
        if isinstance(value, dict | list):
            value = json.dumps(value, ensure_ascii=False)
            value = value if len(value) <= 200 else value[:199] + "…"
        rows.append((key, value))
    table(title, ["field", "value"], rows)
