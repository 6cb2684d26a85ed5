"""The API process stays light: importing it pulls in no torch, transformers or worker code."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import json, sys
import app.main
import app.cli
HEAVY = {"torch", "transformers", "worker", "peft", "safetensors", "accelerate"}
heavy = sorted(name for name in sys.modules if name.split(".")[0] in HEAVY)
print(json.dumps(heavy))
"""


def test_app_main_does_not_import_heavy_modules(tmp_path: Path) -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        "TUNESERVE_DATA_DIR": str(tmp_path),
        "HF_HUB_OFFLINE": "1",
        "PYTHONPATH": str(ROOT),
    }
    result = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    heavy = json.loads(result.stdout.strip().splitlines()[-1])
    assert heavy == [], f"app imports {heavy}"


def test_the_probe_can_fail(tmp_path: Path) -> None:
    """The same probe notices a heavy import (so the test above can fail)."""
    probe = PROBE.replace("import app.cli", "import worker")
    result = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "TUNESERVE_DATA_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "worker" in json.loads(result.stdout.strip().splitlines()[-1])
