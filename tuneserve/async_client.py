"""``AsyncClient``: the asyncio SDK client, with ``Client``'s surface."""

from __future__ import annotations

from types import TracebackType

import httpx

from tuneserve._async import AsyncTransport
from tuneserve._core import (
    DEFAULT_MAX_RETRIES,
    DEFAULT_MAX_RETRY_AFTER_S,
    DEFAULT_TIMEOUT_S,
    Call,
    Options,
)
from tuneserve.models import Usage
from tuneserve.resources import (
    AsyncBaseModels,
    AsyncDatasets,
    AsyncJobs,
    AsyncKeys,
    AsyncModels,
    AsyncSweeps,
)


class AsyncClient:
    """As :class:`tuneserve.Client`, with ``async`` methods (lists and event streams are
    async iterators). Use ``async with``, or ``await client.close()``."""

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT_S,
        max_retries: int = DEFAULT_MAX_RETRIES,
        max_retry_after: float = DEFAULT_MAX_RETRY_AFTER_S,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        options = Options.resolve(
            base_url,
            api_key,
            timeout=timeout,
            max_retries=max_retries,
            max_retry_after_s=max_retry_after,
        )
        self._transport = AsyncTransport(options, http_client)
        self.datasets = AsyncDatasets(self._transport)
        self.jobs = AsyncJobs(self._transport)
        self.sweeps = AsyncSweeps(self._transport)
        self.models = AsyncModels(self._transport)
        self.keys = AsyncKeys(self._transport)
        self.base_models = AsyncBaseModels(self._transport)

    @property
    def base_url(self) -> str:
        return self._transport.options.base_url

    async def usage(self) -> Usage:
        return Usage.model_validate(await self._transport.request(Call("GET", "/v1/usage")))

    async def close(self) -> None:
        await self._transport.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"AsyncClient(base_url={self.base_url!r})"
