"""Schemathesis over every operation of the OpenAPI document, stateful links included.

A real API process (uvicorn) on SQLite, holding a real dataset and a queued job; schemathesis'
CLI (``tests/api/schemathesis.toml``) runs its four phases against it, authenticated with a
real admin key, with a fixed seed and a bounded number of examples per operation. It checks
that no response is a server error, and that every status, content type, header and body is
one the document declares (and more: ``schemathesis.toml``). Its hooks (``fuzz_hooks.py``)
spare the run's own key, put the real dataset and base model into some bodies and a lone
surrogate into others. A failure prints schemathesis' report (each failure with a ``curl`` line to
replay it) and the end of the server's log (the traceback of a 500).

``TUNESERVE_FUZZ_MAX_EXAMPLES`` and ``TUNESERVE_FUZZ_SEED`` run it longer or otherwise.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis

from tests.conftest import configure, reset_caches
from tests.integration.conftest import ROOT, ApiProcess

FUZZ_REDIS_DB = 8
CONFIG = Path(__file__).with_name("schemathesis.toml")
MAX_EXAMPLES = int(os.environ.get("TUNESERVE_FUZZ_MAX_EXAMPLES", "25"))
SEED = int(os.environ.get("TUNESERVE_FUZZ_SEED", "20261202"))
#: the whole run's bound (it takes about 90 s on two cores)
RUN_TIMEOUT_S = 420


@dataclass
class FuzzServer:
    url: str
    key: str
    key_id: str
    env: dict[str, str]
    log: Path

    def tail(self, chars: int = 6000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""


@pytest.fixture
def fuzz_server(
    tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[FuzzServer]:
    from app.db import session_scope
    from app.migrate import upgrade
    from app.tenants.service import create_key

    db_url = f"sqlite:///{tmp_path / 'fuzz.db'}"
    upgrade(db_url)
    broker = f"{redis_url}/{FUZZ_REDIS_DB}"
    settings = {
        "rate_limit_per_minute": "0",  # the run is thousands of requests from one key
        "auth_failures_per_minute": "0",
        "predict_timeout_s": "2",
        "max_upload_bytes": "1000000",
    }
    configure(monkeypatch, db_url=db_url, data_dir=tmp_path / "data", broker_url=broker, **settings)
    with session_scope() as session:
        row, key = create_key(session, tenant_name="fuzz", key_name="fuzz")
        key_id = row.id
    env = {
        **os.environ,
        "TUNESERVE_DATABASE_URL": db_url,
        "TUNESERVE_DATA_DIR": str(tmp_path / "data"),
        "TUNESERVE_BROKER_URL": broker,
        **{f"TUNESERVE_{name.upper()}": value for name, value in settings.items()},
    }
    api = ApiProcess(env, tmp_path / "api.log", access_log=False)
    server = FuzzServer(api.url, key, key_id, env, api.log)
    try:
        yield server
    finally:
        api.stop()
        redis.Redis.from_url(broker).flushdb()
        reset_caches()


def seed(server: FuzzServer) -> dict[str, str]:
    """A dataset (the document's own upload example) and a queued job on it, so that the ids
    the fuzzer finds in lists lead somewhere; the real ids for the hooks."""
    from app.openapi_tables import UPLOAD_EXAMPLE

    headers = {"Authorization": f"Bearer {server.key}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=60) as client:
        fields = {k: v for k, v in UPLOAD_EXAMPLE.items() if k != "file"}
        upload = client.post(
            "/v1/datasets",
            files={"file": ("headlines.csv", UPLOAD_EXAMPLE["file"].encode())},
            data=fields,
        )
        assert upload.status_code == 201, upload.text
        base_model = client.get("/v1/base-models").json()["data"][0]["id"]
        job = client.post(
            "/v1/jobs",
            json={
                "base_model": base_model,
                "dataset_id": upload.json()["id"],
                "strategy": {"name": "linear_probe"},
            },
        )
        assert job.status_code == 201, job.text
    return {
        "TUNESERVE_FUZZ_BASE_MODEL": base_model,
        "TUNESERVE_FUZZ_DATASET_ID": upload.json()["id"],
    }


def test_schemathesis_finds_nothing(fuzz_server: FuzzServer) -> None:
    real_ids = seed(fuzz_server)
    cmd = [sys.executable, "-m", "schemathesis.cli", "--config-file", str(CONFIG), "run"]
    cmd += [f"{fuzz_server.url}/openapi.json", "--seed", str(SEED)]
    # one worker: Hypothesis parses lambdas' source with ast.parse, which CPython 3.11.7 cannot
    # do from two threads at once ("AST constructor recursion depth mismatch")
    cmd += ["--max-examples", str(MAX_EXAMPLES), "--workers", "1", "--no-color"]
    env = {
        **fuzz_server.env,
        "TUNESERVE_FUZZ_KEY": fuzz_server.key,
        "TUNESERVE_FUZZ_KEY_ID": fuzz_server.key_id,
        "PYTHONPATH": str(ROOT),
        **real_ids,
    }
    started = time.monotonic()
    run = subprocess.run(
        cmd,
        cwd=fuzz_server.log.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
    )
    report = run.stdout + run.stderr
    print(report)  # shown with -s, and in the failure below
    print(f"schemathesis run: {time.monotonic() - started:.0f} s")
    assert run.returncode == 0, (
        f"schemathesis found failures (exit {run.returncode}):\n{report}\n"
        f"--- end of the API's log ---\n{fuzz_server.tail()}"
    )
    document = httpx.get(f"{fuzz_server.url}/openapi.json").json()
    operations = sum(len(item) for item in document["paths"].values())
    tested = re.search(r"Tested:\s+(\d+)", report)
    assert tested is not None and int(tested.group(1)) == operations, "not every operation ran"
