"""What the sync and async clients share: settings, one call's description, the retry policy
and how an answer becomes a result or an exception. Nothing here does I/O."""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

import httpx

from tuneserve._version import __version__
from tuneserve.errors import APIConnectionError, APIError, APITimeoutError, error_from_response

DEFAULT_BASE_URL = "http://127.0.0.1:8000"
DEFAULT_TIMEOUT_S = 60.0
DEFAULT_MAX_RETRIES = 3
#: a longer ``Retry-After`` (a full quota says 60 s) is raised at once, not slept through
DEFAULT_MAX_RETRY_AFTER_S = 30.0
#: a live event stream gets a ping every 15 s (by default): this long without a byte is a
#: dead connection, and the stream reconnects
STREAM_READ_TIMEOUT_S = 120.0
_IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})

#: builds the body of one attempt (files are opened on the stack, closed after the attempt)
BodyFactory = Callable[[ExitStack], dict[str, Any]]


@dataclass(frozen=True)
class Options:
    """A client's settings, resolved once."""

    base_url: str
    api_key: str | None
    timeout: httpx.Timeout
    max_retries: int
    backoff_base_s: float = 0.5
    backoff_max_s: float = 8.0
    #: a ``Retry-After`` longer than this is not waited for: the error is raised at once
    max_retry_after_s: float = DEFAULT_MAX_RETRY_AFTER_S

    @classmethod
    def resolve(
        cls,
        base_url: str | None,
        api_key: str | None,
        *,
        timeout: float | httpx.Timeout,
        max_retries: int,
        max_retry_after_s: float,
    ) -> Options:
        url = base_url or os.environ.get("TUNESERVE_URL") or DEFAULT_BASE_URL
        key = api_key if api_key is not None else os.environ.get("TUNESERVE_API_KEY") or None
        if max_retries < 0:
            raise ValueError("max_retries must be 0 or more")
        return cls(
            base_url=url.rstrip("/"),
            api_key=key,
            timeout=timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout),
            max_retries=max_retries,
            max_retry_after_s=max_retry_after_s,
        )

    def headers(self) -> dict[str, str]:
        headers = {"User-Agent": f"tuneserve-python/{__version__}", "Accept": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return headers


@dataclass(frozen=True)
class Call:
    """One API request, as data: both clients send it the same way."""

    method: str
    path: str
    params: Mapping[str, Any] | None = None
    json: Any = None
    body: BodyFactory | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    #: safe to send again although the first attempt may have taken effect
    safe: bool = False
    stream: bool = False

    @property
    def idempotent(self) -> bool:
        return self.safe or self.method in _IDEMPOTENT_METHODS or "Idempotency-Key" in self.headers

    def request_kwargs(self, options: Options, files: ExitStack) -> dict[str, Any]:
        """Keyword arguments of ``httpx.Client.build_request`` for one attempt."""
        kwargs: dict[str, Any] = {
            "method": self.method,
            "url": options.base_url + self.path,
            "headers": {**options.headers(), **self.headers},
        }
        if self.params:
            kwargs["params"] = {k: v for k, v in self.params.items() if v is not None}
        if self.json is not None:
            kwargs["json"] = self.json
        if self.body is not None:
            kwargs.update(self.body(files))
        if self.stream:
            kwargs["timeout"] = httpx.Timeout(
                options.timeout.connect, read=STREAM_READ_TIMEOUT_S, write=options.timeout.write
            )
        return kwargs


class RetryPolicy:
    """When to try again, and after how long.

    - 429: always (the service answers it before doing anything: rate limit, quota, stream cap).
    - 503, and a connection that broke after the request went out: only an idempotent request
      (GET, DELETE, a job cancel, a prediction, a create with an ``Idempotency-Key``).
    - A connection that could not be opened: always (the request never left).

    The wait is the answer's ``Retry-After`` (plus up to 10% jitter) when it has one, else
    exponential backoff with jitter; a ``Retry-After`` past ``max_retry_after_s`` is not waited
    for. At most ``max_retries`` retries.
    """

    def __init__(self, options: Options) -> None:
        self.options = options

    def backoff(self, attempt: int) -> float:
        ceiling = min(self.options.backoff_max_s, self.options.backoff_base_s * 2**attempt)
        return ceiling / 2 + random.uniform(0, ceiling / 2)

    def after_error(self, call: Call, error: APIError, attempt: int) -> float | None:
        """Seconds to wait before retrying ``call`` after ``error``; None: raise it."""
        if attempt >= self.options.max_retries:
            return None
        if not (error.status == 429 or (error.status == 503 and call.idempotent)):
            return None
        wait = error.retry_after
        if wait is None:
            return self.backoff(attempt)
        if wait > self.options.max_retry_after_s:
            return None
        return wait + random.uniform(0, wait / 10)

    def after_transport_error(
        self, call: Call, exc: httpx.TransportError, attempt: int
    ) -> float | None:
        if attempt >= self.options.max_retries:
            return None
        never_sent = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout)
        return self.backoff(attempt) if never_sent or call.idempotent else None

    def reconnect_delay(self, drops: int) -> float | None:
        """Seconds before a dropped event stream reconnects (``drops`` in a row so far, not
        counting this one); None: give up."""
        return self.backoff(drops) if drops < self.options.max_retries else None


def connection_error(exc: httpx.TransportError) -> APIConnectionError:
    """The SDK's exception for a transport failure (raise it ``from exc``)."""
    cls = APITimeoutError if isinstance(exc, httpx.TimeoutException) else APIConnectionError
    return cls(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)


def decode(response: httpx.Response) -> Any:
    """The JSON of a successful answer (None for 204 or an empty body); raises the error of
    any other."""
    if not response.is_success:
        raise error_from_response(response)
    if response.status_code == 204 or not response.content:
        return None
    return response.json()
