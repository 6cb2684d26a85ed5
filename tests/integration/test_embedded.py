"""``tuneserve up`` on a fresh directory: the whole embedded service, then Ctrl-C, no orphans;
a taken port stops it before anything starts; its Redis, data directory and files are private."""

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
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from app.config import Settings
from app.ports import Port, StartupError, claim_ports
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


def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def _up_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "HF_HUB_OFFLINE": "1",
        "TUNESERVE_BASE_MODELS_DIR": str(tmp_path / "models"),
        # a free port, not the default 9101: another tuneserve on this machine may hold it
        "TUNESERVE_SERVING_METRICS_PORT": str(_free_port()),
        **extra,
    }
    for key in ("TUNESERVE_DATABASE_URL", "TUNESERVE_BROKER_URL", "TUNESERVE_DATA_DIR"):
        env.pop(key, None)  # the embedded defaults: SQLite and Redis under ./var
    return env


def _processes_with(marker: str) -> list[int]:
    """Live processes whose environment holds ``marker`` (what one `tuneserve up` started)."""
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if marker.encode() in environ.read_bytes():
                stat = (environ.parent / "stat").read_text().rsplit(")", 1)[1].split()
                if stat[0] != "Z":
                    found.append(int(environ.parent.name))
        except (OSError, IndexError):
            continue
    return found


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port some other program listens on."""
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen(8)
        yield int(other.getsockname()[1])


@pytest.mark.parametrize(
    ("which", "setting"),
    [
        ("redis", "TUNESERVE_EMBEDDED_REDIS_PORT"),
        ("api", "TUNESERVE_PORT"),
        ("metrics", "TUNESERVE_SERVING_METRICS_PORT"),
    ],
)
def test_up_with_a_taken_port_stops_before_starting_anything(
    tmp_path: Path, taken_port: int, which: str, setting: str
) -> None:
    ports = {"api": _free_port(), "redis": _free_port(), "metrics": _free_port(), which: taken_port}
    marker = f"TUNESERVE_TEST_MARKER={uuid.uuid4().hex}"
    env = _up_env(
        tmp_path,
        TUNESERVE_EMBEDDED_REDIS_PORT=str(ports["redis"]),
        TUNESERVE_SERVING_METRICS_PORT=str(ports["metrics"]),
        TUNESERVE_TEST_MARKER=marker.split("=", 1)[1],
    )
    # workers on, as in the finding: the check must come before any of them starts
    proc = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "up", "--port", str(ports["api"])],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        leftovers = _processes_with(marker)
        for pid in leftovers:
            os.kill(pid, signal.SIGKILL)
    assert proc.returncode != 0, out + err
    assert f"port {taken_port} is in use" in err and setting in err, err
    assert "API key" not in out + err and "ts_" not in out + err and "is up" not in out
    assert leftovers == []
    assert not (tmp_path / "var").exists()  # no migration, no data directory, no Redis


def test_claim_ports_is_all_or_none_and_refuses_one_port_for_two_uses(taken_port: int) -> None:
    free = _free_port()
    api = Port("the API", "127.0.0.1", free, "--port or TUNESERVE_PORT")
    redis_port = Port("the embedded Redis", "127.0.0.1", free, "TUNESERVE_EMBEDDED_REDIS_PORT")
    with pytest.raises(StartupError, match=f"port {free} is set for both the API and the embed"):
        claim_ports([api, redis_port])
    taken = Port("the embedded Redis", "127.0.0.1", taken_port, "TUNESERVE_EMBEDDED_REDIS_PORT")
    with pytest.raises(StartupError, match=f"port {taken_port} is in use .*; set TUNESERVE_EMBED"):
        claim_ports([api, taken])
    claimed = claim_ports([api])  # the API's port was released when the second one failed
    assert claimed["the API"].getsockname()[1] == free
    claimed["the API"].close()


def test_up_keeps_its_redis_and_data_private(tmp_path: Path) -> None:
    port, redis_port = _free_port(), _free_port()
    env = _up_env(tmp_path, TUNESERVE_EMBEDDED_REDIS_PORT=str(redis_port))
    var = tmp_path / "var"

    def up() -> tuple[subprocess.Popen[bytes], str]:
        log = tmp_path / "up.log"
        proc = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "up", "--no-worker", "--port", str(port)],
            cwd=tmp_path,
            env=env,
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            text = log.read_text(errors="replace")
            if re.search(r"(first API key .*: \S+|API keys exist already.*)\n", text):
                return proc, text
            assert proc.poll() is None, text
            time.sleep(0.2)
        proc.kill()
        raise AssertionError(log.read_text())

    def down(proc: subprocess.Popen[bytes]) -> None:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0

    proc, text = up()
    try:
        assert "first API key" in text
        password_file = var / "redis" / "password"
        password = password_file.read_text().strip()
        assert len(password) >= 32
        assert _mode(var) == 0o700
        assert _mode(var / "tuneserve.db") == 0o600
        assert _mode(password_file) == 0o600
        assert _mode(var / "redis" / "redis.log") == 0o600  # written by the child, umask 077
        anonymous = redis.Redis(host="127.0.0.1", port=redis_port, protocol=2)
        with anonymous, pytest.raises(redis.AuthenticationError):
            anonymous.ping()
        # what `tuneserve keys`, the API and the workers use: the URL carries the password,
        # and the server answering it is the child of this `tuneserve up`
        url = Settings(data_dir=var, embedded_redis_port=redis_port).celery_broker_url
        assert f":{password}@127.0.0.1:{redis_port}/" in url
        with redis.Redis.from_url(url, protocol=2) as client:
            assert client.info("server")["process_id"] in _descendants(proc.pid)
    finally:
        if proc.poll() is None:
            down(proc)
    # an older data directory was world-readable: the next start tightens it
    var.chmod(0o755)
    (var / "tuneserve.db").chmod(0o644)
    proc, text = up()
    try:
        assert "API keys exist already" in text and "first API key" not in text
        assert password_file.read_text().strip() == password  # reused across restarts
        assert _mode(var) == 0o700
        assert _mode(var / "tuneserve.db") == 0o600
        with redis.Redis(host="127.0.0.1", port=redis_port, password=password, protocol=2) as c:
            assert c.ping()
    finally:
        down(proc)


def test_tuneserve_up_runs_the_whole_flow_and_stops_cleanly(tmp_path: Path) -> None:
    build_tiny_bert(tmp_path / "models" / "tiny-bert")
    port, redis_port = _free_port(), _free_port()
    env = _up_env(tmp_path, TUNESERVE_EMBEDDED_REDIS_PORT=str(redis_port))
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
        # written by the training worker (umask 077), read by the API and the inference worker
        var = tmp_path / "var"
        assert _mode(var) == 0o700
        model_files = [p for p in (var / "models" / job["model_id"]).rglob("*") if p.is_file()]
        assert model_files and {_mode(p) for p in model_files} == {0o600}, model_files
        anonymous = redis.Redis(host="127.0.0.1", port=redis_port, protocol=2)
        with anonymous, pytest.raises(redis.AuthenticationError):
            anonymous.ping()
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
