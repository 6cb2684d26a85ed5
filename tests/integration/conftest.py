"""A real stack: PostgreSQL, Redis, a real ``celery worker`` subprocess, the real app."""

from __future__ import annotations

import contextlib
import csv
import io
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.conftest import reset_caches, truncate_all
from worker.testing import learnable_examples

INTEGRATION_REDIS_DB = 12
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Stack:
    client: TestClient
    headers: dict[str, str]
    data_dir: Path
    env: dict[str, str]
    worker: WorkerProcess
    inference: InferenceProcess

    @property
    def worker_log(self) -> Path:
        return self.worker.log

    @property
    def key(self) -> str:
        """The stack's API key."""
        return self.headers["Authorization"].removeprefix("Bearer ")

    def upload_csv(
        self,
        rows: Iterable[Sequence[str]],
        header: Sequence[str] = ("text", "label"),
        task: str = "text-classification",
    ) -> str:
        """Upload ``rows`` as a CSV dataset; its id."""
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(header)
        writer.writerows(rows)
        r = self.client.post(
            "/v1/datasets",
            headers=self.headers,
            files={"file": ("d.csv", buf.getvalue().encode(), "text/csv")},
            data={"task": task},
        )
        assert r.status_code == 201, r.text
        return str(r.json()["id"])

    def upload_learnable(self, n_per_class: int, seed: int) -> str:
        """The alpha/beta task (``worker.testing.learnable_examples``) as a dataset; its id."""
        texts, labels = learnable_examples(n_per_class, seed=seed)
        return self.upload_csv(zip(texts, labels, strict=True))


def spawn_until_ready(
    cmd: list[str],
    env: dict[str, str],
    log: Path,
    ready: str,
    timeout: float,
    tail: Callable[[], str],
) -> subprocess.Popen[bytes]:
    """Start ``cmd`` in its own process group, logging to ``log``; return once the log says
    ``ready`` (RuntimeError if it exits or is not ready within ``timeout`` seconds)."""
    proc = subprocess.Popen(
        cmd,
        env=env,
        cwd=ROOT,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{cmd[2]} exited {proc.returncode}:\n{tail()}")
        if ready in log.read_text(errors="replace"):
            return proc
        time.sleep(0.2)
    raise RuntimeError(f"{cmd[2]} not ready after {timeout}s:\n{tail()}")


class WorkerProcess:
    """A real ``celery worker`` subprocess (its own process group) that tests can kill."""

    def __init__(
        self,
        env: dict[str, str],
        log_dir: Path,
        *,
        queues: str = "train",
        concurrency: int = 2,
        beat: bool = False,
        extra: tuple[str, ...] = (),
    ) -> None:
        self.env, self.log_dir = env, log_dir
        self.queues, self.concurrency, self.beat, self.extra = queues, concurrency, beat, extra
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = log_dir / "worker-0.log"
        self.starts = 0

    def start(self, timeout: float = 90) -> None:
        self.starts += 1
        self.log = self.log_dir / f"worker-{self.starts}.log"
        cmd = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "worker.celery_app",
            "worker",
            "-Q",
            self.queues,
            "-c",
            str(self.concurrency),
            "-n",
            f"itest-{os.getpid()}-{self.starts}@%h",
            "--loglevel",
            "INFO",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            *self.extra,
        ]
        if self.beat:
            cmd += ["-B", "--schedule", str(self.log_dir / f"beat-{self.starts}")]
        self.proc = spawn_until_ready(cmd, self.env, self.log, " ready.", timeout, self.tail)

    def tail(self, chars: int = 4000) -> str:
        logs = sorted(self.log_dir.glob("worker-*.log"))
        return "".join(p.read_text(errors="replace") for p in logs)[-chars:]

    def children(self) -> list[int]:
        """Pool processes: children of the main process."""
        if self.proc is None:
            return []
        found = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == self.proc.pid:
                found.append(int(stat.parent.name))
        return found

    def kill_all(self) -> None:
        """SIGKILL the whole worker (the machine is lost)."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def terminate(self, timeout: float = 60) -> int:
        """SIGTERM to the main process only (a warm shutdown, as Docker/Kubernetes do)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill_all()
        # reap any orphaned pool child of a killed main process
        for pid in self.children():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def peak_mb(pid: int) -> float:
    """Peak resident memory of process ``pid`` so far, in MB (``VmHWM``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmHWM for process {pid}")


class ApiProcess:
    """A real ``uvicorn app.main:app`` process on a free port of 127.0.0.1, in its own process
    group, started before the constructor returns. ``env`` is its whole environment."""

    def __init__(
        self, env: dict[str, str], log: Path, *, access_log: bool = True, timeout: float = 90
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        cmd = [sys.executable, "-m", "uvicorn", "app.main:app", "--host", "127.0.0.1"]
        cmd += ["--port", str(self.port)] + ([] if access_log else ["--no-access-log"])
        env = {"PYTHONPATH": str(ROOT), **env}
        self.proc = spawn_until_ready(
            cmd, env, log, "Application startup complete", timeout, self.tail
        )
        self.pid = self.proc.pid

    def tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()


@contextlib.contextmanager
def api_beside(stack: Stack, log_dir: Path, **settings: str) -> Iterator[ApiProcess]:
    """A real uvicorn API on the stack's database, broker and data, with ``settings`` as
    ``TUNESERVE_*`` overrides (``stream_poll_interval_s="0.25"``); stopped on exit."""
    env = {**stack.env, **{f"TUNESERVE_{k.upper()}": v for k, v in settings.items()}}
    process = ApiProcess(env, log_dir / "api.log")
    try:
        yield process
    finally:
        process.stop()


class InferenceProcess:
    """A real inference worker (``python -m worker.serving``) in its own process group."""

    def __init__(self, env: dict[str, str], log_dir: Path, **settings: str) -> None:
        self.metrics_port = free_port()
        self.env = {
            **env,
            "TUNESERVE_SERVING_METRICS_PORT": str(self.metrics_port),
            **{f"TUNESERVE_{key.upper()}": value for key, value in settings.items()},
        }
        self.log_dir = log_dir
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = log_dir / "inference-0.log"
        self.starts = 0

    def start(self, timeout: float = 90) -> None:
        self.starts += 1
        self.log = self.log_dir / f"inference-{self.starts}.log"
        self.proc = spawn_until_ready(
            [sys.executable, "-m", "worker.serving"],
            self.env,
            self.log,
            "inference worker ready.",
            timeout,
            self.tail,
        )

    def tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    def metrics(self) -> str:
        import urllib.request

        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            return str(response.read().decode())

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def metric_value(text: str, name: str, labels: str = "") -> float:
    """The value of one sample in a Prometheus text page (0 when absent)."""
    wanted = f"{name}{{{labels}}}" if labels else name
    for line in text.splitlines():
        if line.startswith(wanted + " "):
            return float(line.split()[-1])
    return 0.0


@pytest.fixture(scope="module")
def stack(
    postgres_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    import redis

    from worker.testing import build_tiny_bert
    from worker.testing_models import tiny_clip_dir, tiny_gpt2_dir, tiny_resnet_dir

    root = tmp_path_factory.mktemp("stack")
    models_dir = root / "base-models"
    build_tiny_bert(models_dir / "tiny-bert")
    build_tiny_bert(models_dir / "tiny-st-bert", sentence_transformers_pooling="mean")
    tiny_resnet_dir(models_dir / "tiny-resnet")
    tiny_clip_dir(models_dir / "tiny-clip")
    tiny_gpt2_dir(models_dir / "tiny-gpt2")
    broker = f"{redis_url}/{INTEGRATION_REDIS_DB}"
    redis.Redis.from_url(broker).flushdb()
    values = {
        "TUNESERVE_DATABASE_URL": postgres_url,
        "TUNESERVE_BROKER_URL": broker,
        "TUNESERVE_DATA_DIR": str(root / "data"),
        "TUNESERVE_BASE_MODELS_DIR": str(models_dir),
        "TUNESERVE_PROGRESS_WRITE_INTERVAL_S": "0.5",
        "TUNESERVE_PREDICT_TIMEOUT_S": "60",
        "TUNESERVE_WEBHOOK_ALLOW_PRIVATE": "true",  # the webhook tests' receiver is on 127.0.0.1
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    env = {**os.environ, **values, "PYTHONPATH": str(ROOT)}
    mp = pytest.MonkeyPatch()
    for key, value in values.items():
        mp.setenv(key, value)
    reset_caches()
    worker = WorkerProcess(env, root)
    inference = InferenceProcess(env, root)
    try:
        worker.start()
        inference.start()
        from app.db import session_scope
        from app.main import create_app
        from app.tenants.service import create_key

        with session_scope() as s:
            _, key = create_key(s, tenant_name="integration")
        with TestClient(create_app(), raise_server_exceptions=False) as client:
            yield Stack(
                client=client,
                headers={"Authorization": f"Bearer {key}"},
                data_dir=root / "data",
                env=env,
                worker=worker,
                inference=inference,
            )
    finally:
        worker.stop()
        inference.stop()
        reset_caches()
        truncate_all(postgres_url)
        redis.Redis.from_url(broker).flushdb()
        mp.undo()
