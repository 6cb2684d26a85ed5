"""The production compose file is valid (``docker-compose config`` needs no engine)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _docker_compose() -> str:
    exe = shutil.which("docker-compose")
    if exe is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("docker-compose is missing; .ci/run installs Debian's package")
        pytest.skip("docker-compose (Debian package) not installed")
    return exe


def test_compose_file_is_valid_and_complete() -> None:
    exe = _docker_compose()
    out = subprocess.run(
        [exe, "-f", str(ROOT / "docker-compose.yml"), "config"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr
    config = out.stdout
    for service in (
        "postgres:",
        "redis:",
        "api:",
        "worker-train:",
        "worker-infer:",
        "worker-maintenance:",
    ):
        assert service in config
    assert "capabilities:" in config and "gpu" in config  # the GPU reservation
    assert "worker.serving" in config  # inference runs its own batching process
    assert config.count("healthcheck:") >= 4
    assert "artifacts:" in config


def test_compose_rejects_a_broken_file(tmp_path: Path) -> None:
    exe = _docker_compose()
    bad = tmp_path / "docker-compose.yml"
    bad.write_text("services:\n  api:\n    image: x\n    ports: 12\n")
    out = subprocess.run(
        [exe, "-f", str(bad), "config"], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert out.returncode != 0
