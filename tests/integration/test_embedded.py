"""``tuneserve up`` on a fresh directory: the whole embedded service, then Ctrl-C, no orphans."""

from __future__ import annotations

import csv
import io
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from worker.testing import build_tiny_bert, learnable_examples

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _descendants(pid: int) -> list[int]:
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            parents[int(stat.parent.name)] = int(fields[1])
        except (OSError, IndexError, ValueError):
            continue
    found, frontier = [], [pid]
    while frontier:
        current = frontier.pop()
        kids = [child for child, parent in parents.items() if parent == current]
        found += kids
        frontier += kids
    return found


def test_tuneserve_up_runs_the_whole_flow_and_stops_cleanly(tmp_path: Path) -> None:
    build_tiny_bert(tmp_path / "models" / "tiny-bert")
    port, redis_port = _free_port(), _free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "HF_HUB_OFFLINE": "1",
        "TUNESERVE_BASE_MODELS_DIR": str(tmp_path / "models"),
        "TUNESERVE_EMBEDDED_REDIS_PORT": str(redis_port),
    }
    for key in ("TUNESERVE_DATABASE_URL", "TUNESERVE_BROKER_URL", "TUNESERVE_DATA_DIR"):
        env.pop(key, None)  # the embedded defaults: SQLite and Redis under ./var
    log = tmp_path / "up.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "up", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 120
        key = None
        while time.monotonic() < deadline and key is None:
            assert proc.poll() is None, log.read_text()
            match = re.search(
                r"first API key \(shown once, store it now\): (\S+)",
                log.read_text(errors="replace"),
            )
            key = match.group(1) if match else None
            time.sleep(0.3)
        assert key, log.read_text()
        assert (tmp_path / "var" / "tuneserve.db").is_file()
        url = f"http://127.0.0.1:{port}"
        headers = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=url, headers=headers, timeout=60) as client:
            assert client.get("/readyz").status_code == 200
            texts, labels = learnable_examples(20, seed=4)
            buf = io.StringIO()
            csv.writer(buf).writerows([["text", "label"], *zip(texts, labels, strict=True)])
            r = client.post("/v1/datasets", files={"file": ("d.csv", buf.getvalue().encode())})
            assert r.status_code == 201 and r.json()["status"] == "ready", r.text
            r = client.post(
                "/v1/jobs",
                json={
                    "base_model": "tiny-bert",
                    "dataset_id": r.json()["id"],
                    "strategy": {"name": "linear_probe"},
                    "hyperparameters": {"epochs": 20, "batch_size": 8, "max_length": 32},
                },
            )
            assert r.status_code == 201 and r.json()["status"] == "queued", r.text
            job_id = r.json()["id"]
            while time.monotonic() < deadline + 120:
                job = client.get(f"/v1/jobs/{job_id}").json()
                if job["status"] in {"succeeded", "failed", "cancelled"}:
                    break
                time.sleep(0.5)
            logs = "".join(p.read_text() for p in (tmp_path / "var" / "logs").glob("*.log"))
            assert job["status"] == "succeeded", (job, logs[-3000:])
            r = client.post(
                f"/v1/models/{job['model_id']}/predict", json={"inputs": ["alpha alpha alpha kalo"]}
            )
            assert r.status_code == 200 and r.json()["predictions"][0]["label"] == "A"
        children = _descendants(proc.pid)
        assert len(children) >= 4  # redis, api, two workers (and their pool processes)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
        time.sleep(0.5)
        alive = [
            pid
            for pid in children
            if Path(f"/proc/{pid}").exists()
            and "Z" not in Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1][:3]
        ]
        assert alive == [], alive
    finally:
        if proc.poll() is None:
            proc.kill()
        for pid in _descendants(proc.pid):
            os.kill(pid, signal.SIGKILL)
