"""The API's side of the inference queue: send a request, await its answer without blocking.

One :class:`InferenceGateway` per event loop owns two Redis clients (``redis.asyncio``) and
one listener task that BLPOPs the process's reply list and completes the waiting request's
future. A waiting request holds no thread and no database connection: only a future.
On timeout the request is taken back out of its queue (``LREM``) if no worker has popped it
yet; a worker that has popped it drops it at its deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import redis.asyncio as aioredis

from app.config import get_settings
from app.inference.protocol import (
    ENQUEUE_LUA,
    TENANTS_KEY,
    WAKE_KEY,
    InferReply,
    InferRequest,
    new_reply_key,
    queue_key,
)
from app.loop_local import LoopLocal

log = logging.getLogger(__name__)

#: how long a BLPOP of the listener blocks before it looks again (seconds)
_LISTEN_BLOCK_S = 1
#: replies taken from the reply list in one round trip after a BLPOP returns
_DRAIN = 256
#: Redis connections one API process uses to send requests
_COMMAND_CONNECTIONS = 16


class QueueUnavailable(Exception):
    """Redis did not take the request."""


class InferenceGateway:
    def __init__(self, broker_url: str) -> None:
        self.reply_key = new_reply_key()
        # a bounded pool: a burst of requests waits for a connection instead of opening one
        # each (or failing with "too many connections")
        pool = aioredis.BlockingConnectionPool.from_url(
            broker_url,
            max_connections=_COMMAND_CONNECTIONS,
            timeout=2.0,
            socket_connect_timeout=2.0,
            socket_timeout=2.0,
        )
        self._commands = aioredis.Redis(connection_pool=pool)
        self._enqueue_script = self._commands.register_script(ENQUEUE_LUA)
        self._listen_client = aioredis.Redis.from_url(
            broker_url, socket_connect_timeout=2.0, socket_timeout=_LISTEN_BLOCK_S + 4.0
        )
        self._waiting: dict[str, asyncio.Future[InferReply]] = {}
        self._listener: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()

    def _ensure_listener(self) -> None:
        if self._listener is None or self._listener.done():
            self._listener = asyncio.get_running_loop().create_task(self._listen())

    async def _listen(self) -> None:
        while True:
            try:
                item = await self._listen_client.blpop([self.reply_key], timeout=_LISTEN_BLOCK_S)
                if item is None:
                    continue
                # the others that came meanwhile, in one round trip
                more = await self._listen_client.lpop(self.reply_key, _DRAIN)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("inference reply listener: %s; retrying", exc)
                await asyncio.sleep(0.5)
                continue
            for raw in [item[1], *(more or [])]:
                self._resolve(raw)

    def _resolve(self, raw: bytes) -> None:
        try:
            reply = InferReply.decode(raw)
        except (ValueError, TypeError) as exc:
            log.error("malformed inference reply dropped (%s)", type(exc).__name__)
            return
        future = self._waiting.get(reply.id)
        if future is not None and not future.done():
            future.set_result(reply)

    async def _enqueue(self, request: InferRequest, ttl_s: int) -> None:
        try:
            await self._enqueue_script(
                keys=[queue_key(request.tenant), TENANTS_KEY, WAKE_KEY],
                args=[request.tenant, request.encode(), ttl_s],
            )
        except Exception as exc:
            raise QueueUnavailable(str(exc)) from exc

    async def _withdraw(self, request: InferRequest) -> None:
        with contextlib.suppress(Exception):
            await self._commands.lrem(queue_key(request.tenant), 1, request.encode())

    async def call(self, request: InferRequest, *, timeout_s: float) -> InferReply | None:
        """Send ``request`` and wait for its answer; None when ``timeout_s`` passes first."""
        self._ensure_listener()
        future: asyncio.Future[InferReply] = asyncio.get_running_loop().create_future()
        self._waiting[request.id] = future
        try:
            await self._enqueue(request, ttl_s=int(timeout_s) + 60)
            try:
                return await asyncio.wait_for(future, timeout=timeout_s)
            except TimeoutError:
                await self._withdraw(request)
                return None
            except asyncio.CancelledError:  # the caller went away: no worker should compute it
                task = asyncio.get_running_loop().create_task(self._withdraw(request))
                self._background.add(task)  # held until done: a task nobody holds may vanish
                task.add_done_callback(self._background.discard)
                raise
        finally:
            self._waiting.pop(request.id, None)

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(BaseException):
                await self._listener
        for client in (self._commands, self._listen_client):
            with contextlib.suppress(Exception):
                await client.aclose()

    @property
    def waiting(self) -> int:
        return len(self._waiting)


_gateways: LoopLocal[InferenceGateway] = LoopLocal(
    lambda: InferenceGateway(get_settings().celery_broker_url)
)


def gateway() -> InferenceGateway:
    """The gateway of the running event loop (made on first use)."""
    return _gateways.get()


def reset_gateways() -> None:
    """Forget every gateway (tests change the broker URL between apps)."""
    _gateways.clear()


async def close_gateway() -> None:
    """Stop the running loop's listener and close its connections (app shutdown)."""
    found = _gateways.pop()
    if found is not None:
        await found.close()
