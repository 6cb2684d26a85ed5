"""``tuneserve up``: the whole service as child processes of one command.

Before anything starts (and before any key is printed) it claims its ports: the API's, the
embedded Redis's and the inference worker's metrics port; a taken one stops it with a message
that names the port and the setting that moves it. It then applies migrations, starts a real
Redis with a generated password (``app.embedded_redis``) unless ``TUNESERVE_BROKER_URL`` points
elsewhere, the API under uvicorn (on the socket claimed here, handed over with ``--fd``, so no
other process can answer in its place), a training worker (``-Q train -c 1``), an inference
worker (``python -m worker.serving``) and a maintenance worker (``-Q maintenance``) that also
runs the beat scheduling the reaper.

Everything it writes is private: the data directory is 0700 and every process runs with a
umask of 0o077, so the SQLite file, the Redis password, the logs and the artifacts are 0600.
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
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from app import embedded_redis
from app.config import Settings, get_settings
from app.embedded_redis import redis_server_binary
from app.ports import Port, StartupError, claim_ports
from app.storage import private_dir, private_file

__all__ = ["redis_server_binary", "run_embedded"]

_PR_SET_PDEATHSIG = 1
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))
PRIVATE_UMASK = 0o077


def _child_setup() -> None:
    os.umask(PRIVATE_UMASK)
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _spawner(env: dict[str, str]) -> Callable[..., subprocess.Popen[bytes]]:
    def spawn(cmd: list[str], log: Path | None = None, **kwargs: Any) -> subprocess.Popen[bytes]:
        out = log.open("ab") if log is not None else None
        try:
            return subprocess.Popen(
                cmd,
                env=env,
                preexec_fn=_child_setup,
                stdout=out,
                stderr=subprocess.STDOUT if out else None,
                **kwargs,
            )
        finally:
            if out is not None:
                out.close()

    return spawn


def _wait_api(url: str, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise StartupError(f"the API exited with {proc.returncode} while starting")
        with contextlib.suppress(OSError), _NO_PROXY.open(f"{url}/healthz", timeout=2) as reply:
            if reply.status == 200:
                return
        time.sleep(0.2)
    raise StartupError(f"the API did not answer at {url} within {timeout:.0f} s")


def _first_key() -> str | None:
    from app.db import session_scope
    from app.tenants.service import count_keys, create_key

    with session_scope() as session:
        if count_keys(session) > 0:
            return None
        _, plain = create_key(session, tenant_name="default", key_name="first key")
        return plain


def run_embedded(*, host: str, port: int, workers: bool) -> int:
    os.umask(PRIVATE_UMASK)
    settings = get_settings()
    ports = [Port("the API", host, port, "--port or TUNESERVE_PORT")]
    if not settings.broker_url:
        ports.append(
            Port(
                "the embedded Redis",
                "127.0.0.1",
                settings.embedded_redis_port,
                "TUNESERVE_EMBEDDED_REDIS_PORT",
            )
        )
    if workers and settings.serving_metrics_port:
        ports.append(
            Port(
                "the inference worker's metrics",
                settings.host,
                settings.serving_metrics_port,
                "TUNESERVE_SERVING_METRICS_PORT (0: no metrics endpoint)",
            )
        )
    try:
        claimed = claim_ports(ports)
    except StartupError as exc:
        print(f"tuneserve: {exc}", file=sys.stderr, flush=True)
        return 1
    try:
        return _run(settings, claimed, host=host, workers=workers)
    finally:
        for sock in claimed.values():
            sock.close()


def _run(settings: Settings, claimed: dict[str, socket.socket], *, host: str, workers: bool) -> int:
    data_dir = private_dir(settings.data_dir.resolve())
    logs = private_dir(data_dir / "logs")
    env = {
        **os.environ,
        "TUNESERVE_DATA_DIR": str(data_dir),
        "HF_HUB_OFFLINE": "1",
        "PYTHONUNBUFFERED": "1",
    }
    if settings.database_url:
        env["TUNESERVE_DATABASE_URL"] = settings.database_url
    spawn = _spawner(env)

    from app.migrate import upgrade

    upgrade(settings.sqlalchemy_url)
    if not settings.database_url:  # SQLite: a database written by an older version was 0644
        for suffix in ("", "-wal", "-shm"):
            private_file(data_dir / f"tuneserve.db{suffix}")
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
            password = embedded_redis.ensure_password(settings.embedded_redis_password_file)
            claimed.pop("the embedded Redis").close()  # redis-server binds it now
            children.append(
                (
                    "redis",
                    embedded_redis.start(data_dir, settings.embedded_redis_port, password, spawn),
                )
            )
        env["TUNESERVE_BROKER_URL"] = settings.celery_broker_url  # with the password
        api_sock = claimed.pop("the API")
        api_sock.listen(2048)
        api_port = int(api_sock.getsockname()[1])
        api = spawn(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "app.main:app",
                "--fd",
                str(api_sock.fileno()),
                "--no-access-log",
            ],
            pass_fds=(api_sock.fileno(),),
        )
        api_sock.close()  # uvicorn holds it now: nothing else can answer on this port
        children.append(("api", api))
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
                    spawn(
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
                        logs / "worker-train.log",
                    ),
                )
            )
            # inference: one batching process per device (docs/serving.md)
            metrics_sock = claimed.pop("the inference worker's metrics", None)
            if metrics_sock is not None:
                metrics_sock.close()  # the inference worker binds it now
            children.append(
                (
                    "worker-infer",
                    spawn([sys.executable, "-m", "worker.serving"], logs / "worker-infer.log"),
                )
            )
            # maintenance, with the beat that schedules the reaper
            children.append(
                (
                    "worker-maintenance",
                    spawn(
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
                        logs / "worker-maintenance.log",
                    ),
                )
            )
        shown = "127.0.0.1" if host in {"0.0.0.0", "::", ""} else host
        url = f"http://{f'[{shown}]' if ':' in shown else shown}:{api_port}"
        _wait_api(url, api, 60)
        key = _first_key()
        print(f"\ntuneserve is up at {url}  (dashboard: {url}/ui/  docs: {url}/docs)", flush=True)
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
    except (StartupError, embedded_redis.EmbeddedRedisError) as exc:
        print(f"tuneserve: {exc}", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:
        print("\nstopping ...", flush=True)
        return 0
    finally:
        stop()
