"""The ports of ``tuneserve up``, claimed before anything starts.

Each is bound here first (all or none), so a taken port stops the command before it migrates,
starts a process or prints a key, with a message that names the port and the setting that
moves it. The caller hands each socket over (uvicorn takes the API's with ``--fd``) or closes it
just before the process that binds that port starts.
"""

from __future__ import annotations

import errno
import socket
from dataclasses import dataclass


class StartupError(RuntimeError):
    """Why ``tuneserve up`` cannot start, in one line for the terminal."""


@dataclass(frozen=True)
class Port:
    """A port to claim: what needs it (for the message), where, and the setting that moves it."""

    what: str
    host: str
    port: int
    setting: str


def _bind(host: str, port: int) -> socket.socket:
    family, kind, proto, _, address = socket.getaddrinfo(
        host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        # like uvicorn and redis-server: a connection in TIME_WAIT does not make a port taken
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    return sock


def claim_ports(ports: list[Port]) -> dict[str, socket.socket]:
    """Bind every port (all or none); a taken one raises ``StartupError`` naming its setting."""
    seen: dict[int, Port] = {}
    for item in ports:
        if item.port and item.port in seen:
            raise StartupError(
                f"port {item.port} is set for both {seen[item.port].what} and {item.what}; "
                f"set {item.setting} to another port"
            )
        seen[item.port] = item
    claimed: dict[str, socket.socket] = {}
    try:
        for item in ports:
            try:
                claimed[item.what] = _bind(item.host, item.port)
            except OSError as exc:
                reason = "is in use" if exc.errno == errno.EADDRINUSE else f"cannot be used ({exc})"
                raise StartupError(
                    f"port {item.port} {reason} ({item.what} on {item.host} needs it); "
                    f"set {item.setting} to another port"
                ) from None
    except BaseException:
        for sock in claimed.values():
            sock.close()
        raise
    return claimed
