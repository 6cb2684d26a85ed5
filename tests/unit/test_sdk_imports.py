"""The SDK stays a light HTTP client: ``import tuneserve`` loads no torch, transformers, worker
or app code (nor pandas, which it only duck-types)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import json, sys
import tuneserve
from tuneserve import AsyncClient, Client
Client("http://127.0.0.1:1", api_key="k").close()
HEAVY = {"torch", "transformers", "worker", "app", "peft", "safetensors", "pandas", "sqlalchemy"}
heavy = sorted(name for name in sys.modules if name.split(".")[0] in HEAVY)
print(json.dumps({"heavy": heavy, "version": tuneserve.__version__}))
"""


def probe(code: str) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    found: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return found


def test_import_tuneserve_loads_nothing_heavy() -> None:
    found = probe(PROBE)
    assert found["heavy"] == [], f"tuneserve imports {found['heavy']}"
    assert isinstance(found["version"], str) and found["version"]


def test_the_probe_can_fail() -> None:
    """The same probe notices a heavy import (so the test above can fail)."""
    found = probe(PROBE.replace("import tuneserve\n", "import tuneserve\nimport app.config\n"))
    assert "app" in found["heavy"]
