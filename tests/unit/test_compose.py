"""The production compose file is valid (``docker-compose config`` needs no engine), takes its
passwords from an env file and writes none of them down."""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
PASSWORDS = ("POSTGRES_PASSWORD", "REDIS_PASSWORD")


def _docker_compose() -> str:
    exe = shutil.which("docker-compose")
    if exe is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("docker-compose is missing; .ci/run installs Debian's package")
        pytest.skip("docker-compose (Debian package) not installed")
    return exe


def _config(tmp_path: Path, env_file: Path | None) -> subprocess.CompletedProcess[str]:
    """``docker-compose config`` on a copy of the file in an empty directory, so that no
    ``.env`` of a checkout and no password in this process's environment is read."""
    shutil.copy(COMPOSE, tmp_path / "docker-compose.yml")
    cmd = [_docker_compose(), "-f", str(tmp_path / "docker-compose.yml")]
    if env_file is not None:
        cmd += ["--env-file", str(env_file)]
    env = {k: v for k, v in os.environ.items() if k not in PASSWORDS}
    return subprocess.run(
        [*cmd, "config"], capture_output=True, text=True, timeout=60, cwd=tmp_path, env=env
    )


def test_compose_file_is_valid_and_complete(tmp_path: Path) -> None:
    out = _config(tmp_path, ENV_EXAMPLE)
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


def test_compose_without_its_passwords_fails_naming_them(tmp_path: Path) -> None:
    out = _config(tmp_path, None)  # no env file at all
    assert out.returncode != 0
    assert "set POSTGRES_PASSWORD in .env, see .env.example" in out.stderr, out.stderr
    env_file = tmp_path / "partial.env"
    env_file.write_text("POSTGRES_PASSWORD=x\n")  # one of the two
    out = _config(tmp_path, env_file)
    assert out.returncode != 0
    assert "set REDIS_PASSWORD in .env, see .env.example" in out.stderr, out.stderr


def test_compose_file_writes_no_password_down() -> None:
    text = COMPOSE.read_text()
    for line in text.splitlines():
        if re.match(r"\s*[A-Z_]*PASSWORD\s*:", line):  # every password setting is ${VAR:?..}
            assert re.match(r"\s*[A-Z_]*PASSWORD\s*:\s*\"\$\{[A-Z_]+:\?[^}]*\}\"$", line), line
    for credentials in re.findall(r"://([^/@\s\"]*)@", text):  # and so is every URL's
        assert re.fullmatch(r"[a-z]*:\$\{[A-Z_]+:\?[^}]*\}", credentials), credentials
    example = dict(
        line.split("=", 1)
        for line in ENV_EXAMPLE.read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert set(example) == set(PASSWORDS)
    for value in example.values():
        assert value not in text


def test_passwords_reach_services_only_through_their_environment(tmp_path: Path) -> None:
    pg, rd = secrets.token_hex(16), secrets.token_hex(16)
    env_file = tmp_path / "secrets.env"
    env_file.write_text(f"POSTGRES_PASSWORD={pg}\nREDIS_PASSWORD={rd}\n")
    out = _config(tmp_path, env_file)
    assert out.returncode == 0, out.stderr
    services: dict[str, Any] = yaml.safe_load(out.stdout)["services"]
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD"] == pg
    assert services["redis"]["environment"]["REDIS_PASSWORD"] == rd
    for name, service in services.items():
        command = " ".join(service.get("command") or [])
        test = " ".join(service.get("healthcheck", {}).get("test") or [])
        assert pg not in command + test and rd not in command + test, name  # `ps` shows these
        if name.startswith(("api", "worker", "beat")):
            env = service["environment"]
            assert env["TUNESERVE_DATABASE_URL"].startswith(f"postgresql+psycopg://tuneserve:{pg}@")
            assert env["TUNESERVE_BROKER_URL"] == f"redis://:{rd}@redis:6379/0"
    assert "requirepass $$REDIS_PASSWORD" in " ".join(services["redis"]["command"])
    assert "REDISCLI_AUTH" in " ".join(services["redis"]["healthcheck"]["test"])


def test_compose_rejects_a_broken_file(tmp_path: Path) -> None:
    exe = _docker_compose()
    bad = tmp_path / "docker-compose.yml"
    bad.write_text("services:\n  api:\n    image: x\n    ports: 12\n")
    out = subprocess.run(
        [exe, "-f", str(bad), "config"], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert out.returncode != 0
