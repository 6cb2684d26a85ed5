"""``Client``: the blocking SDK client."""

from __future__ import annotations

from types import TracebackType

import httpx

from tuneserve._core import (
    DEFAULT_MAX_RETRIES,
    DEFAULT_MAX_RETRY_AFTER_S,
    DEFAULT_TIMEOUT_S,
    Call,
    Options,
)
from tuneserve._sync import SyncTransport
from tuneserve.models import Usage
from tuneserve.resources import BaseModels, Datasets, Jobs, Keys, Models, Sweeps


class Client:
    """A tuneserve API client.

    ``base_url`` and ``api_key`` default to the environment's ``TUNESERVE_URL`` and
    ``TUNESERVE_API_KEY`` (the URL then to ``http://127.0.0.1:8000``). ``timeout`` is httpx's
    (seconds per connect, read or write, or an ``httpx.Timeout``). Rate-limited (429),
    unavailable (503) and broken requests are retried up to ``max_retries`` times when that is
    safe, honouring ``Retry-After`` up to ``max_retry_after`` seconds (see docs/sdk.md).
    Pass ``http_client`` to bring your own ``httpx.Client`` (proxies, TLS, event hooks); it is
    then yours to close. Use as a context manager, or call :meth:`close`.
    """

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT_S,
        max_retries: int = DEFAULT_MAX_RETRIES,
        max_retry_after: float = DEFAULT_MAX_RETRY_AFTER_S,
        http_client: httpx.Client | None = None,
    ) -> None:
        options = Options.resolve(
            base_url,
            api_key,
            timeout=timeout,
            max_retries=max_retries,
            max_retry_after_s=max_retry_after,
        )
        self._transport = SyncTransport(options, http_client)
        self.datasets = Datasets(self._transport)
        self.jobs = Jobs(self._transport)
        self.sweeps = Sweeps(self._transport)
        self.models = Models(self._transport)
        self.keys = Keys(self._transport)
        self.base_models = BaseModels(self._transport)

    @property
    def base_url(self) -> str:
        return self._transport.options.base_url

    def usage(self) -> Usage:
        """The tenant's quotas used and their limits, and the key's rate limit."""
        return Usage.model_validate(self._transport.request(Call("GET", "/v1/usage")))

    def close(self) -> None:
        self._transport.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Client(base_url={self.base_url!r})"
