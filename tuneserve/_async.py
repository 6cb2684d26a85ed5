"""The asyncio transport: :class:`~tuneserve._sync.SyncTransport`'s twin over
``httpx.AsyncClient``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import ExitStack, asynccontextmanager
from typing import Any

import httpx

from tuneserve._core import Call, Options, RetryPolicy, connection_error, decode
from tuneserve.errors import error_from_response


class AsyncTransport:
    def __init__(self, options: Options, http_client: httpx.AsyncClient | None = None) -> None:
        self.options = options
        self.policy = RetryPolicy(options)
        self._owned = http_client is None
        self.http = http_client or httpx.AsyncClient(timeout=options.timeout)

    async def close(self) -> None:
        if self._owned:
            await self.http.aclose()

    async def request(self, call: Call) -> Any:
        return decode(await self._send(call))

    @asynccontextmanager
    async def stream(self, call: Call) -> AsyncIterator[httpx.Response]:
        response = await self._send(call, stream=True)
        try:
            yield response
        finally:
            await response.aclose()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    async def _send(self, call: Call, *, stream: bool = False) -> httpx.Response:
        attempt = 0
        while True:
            with ExitStack() as files:
                request = self.http.build_request(**call.request_kwargs(self.options, files))
                try:
                    response = await self.http.send(request, stream=stream)
                except httpx.TransportError as exc:
                    delay = self.policy.after_transport_error(call, exc, attempt)
                    if delay is None:
                        raise connection_error(exc) from exc
                else:
                    if response.is_success:
                        return response
                    if stream:
                        await response.aread()
                        await response.aclose()
                    error = error_from_response(response)
                    delay = self.policy.after_error(call, error, attempt)
                    if delay is None:
                        raise error
            attempt += 1
            await asyncio.sleep(delay)
