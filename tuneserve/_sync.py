"""The blocking transport: sends a :class:`~tuneserve._core.Call` with retries over httpx."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import httpx

from tuneserve._core import Call, Options, RetryPolicy, connection_error, decode
from tuneserve.errors import error_from_response


class SyncTransport:
    def __init__(self, options: Options, http_client: httpx.Client | None = None) -> None:
        self.options = options
        self.policy = RetryPolicy(options)
        self._owned = http_client is None
        self.http = http_client or httpx.Client(timeout=options.timeout)

    def close(self) -> None:
        if self._owned:
            self.http.close()

    def request(self, call: Call) -> Any:
        """Send ``call`` (retrying as the policy says); the answer's JSON."""
        return decode(self._send(call))

    @contextmanager
    def stream(self, call: Call) -> Iterator[httpx.Response]:
        """Open ``call`` as a streamed response (retrying the opening as for any request);
        closed when the block ends."""
        response = self._send(call, stream=True)
        try:
            yield response
        finally:
            response.close()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)

    def _send(self, call: Call, *, stream: bool = False) -> httpx.Response:
        attempt = 0
        while True:
            with ExitStack() as files:
                request = self.http.build_request(**call.request_kwargs(self.options, files))
                try:
                    response = self.http.send(request, stream=stream)
                except httpx.TransportError as exc:
                    delay = self.policy.after_transport_error(call, exc, attempt)
                    if delay is None:
                        raise connection_error(exc) from exc
                else:
                    if response.is_success:
                        return response
                    if stream:
                        response.read()
                        response.close()
                    error = error_from_response(response)
                    delay = self.policy.after_error(call, error, attempt)
                    if delay is None:
                        raise error
            attempt += 1
            time.sleep(delay)
