"""The SDK's exception tree, built from the API's one error shape.

Every error the service returns looks like ``{"error": {"code", "message", "details"}}``; the
SDK raises it as the subclass of :class:`TuneserveError` named by its HTTP status::

    TuneserveError                    .status .code .message .details .response
    ├── APIError                      any error status the SDK has no class for (500, 405, ...)
    │   ├── BadRequest                400
    │   │   └── InvalidInput          422 (``invalid_input``, ``dataset_invalid``, ...)
    │   ├── Unauthorized              401
    │   ├── Forbidden                 403
    │   ├── NotFound                  404
    │   ├── Conflict                  409
    │   ├── PayloadTooLarge           413
    │   ├── UnsupportedMediaType      415
    │   ├── RateLimited               429 (``.retry_after``)
    │   ├── ServiceUnavailable        503 (``.retry_after``)
    │   └── GatewayTimeout            504
    ├── APIConnectionError            no answer: the connection failed or timed out
    │   └── APITimeoutError
    └── WaitTimeout                   ``wait()`` ran out of time (also a ``TimeoutError``)
"""

from __future__ import annotations

import json
from typing import Any

import httpx


class TuneserveError(Exception):
    """Base of every error the SDK raises."""

    status: int | None = None
    code: str = "error"

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        details: Any = None,
        response: httpx.Response | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        if code is not None:
            self.code = code
        self.details = details
        self.response = response

    def __str__(self) -> str:
        prefix = f"{self.status} " if self.status is not None else ""
        return f"{prefix}{self.code}: {self.message}"


class APIError(TuneserveError):
    """The service answered with an error status."""

    @property
    def retry_after(self) -> float | None:
        """Seconds the ``Retry-After`` header asks to wait, when it gives them."""
        if self.response is None:
            return None
        return parse_retry_after(self.response.headers.get("retry-after"))


class BadRequest(APIError):
    status = 400
    code = "bad_request"


class InvalidInput(BadRequest):
    status = 422
    code = "invalid_input"


class Unauthorized(APIError):
    status = 401
    code = "unauthorized"


class Forbidden(APIError):
    status = 403
    code = "forbidden"


class NotFound(APIError):
    status = 404
    code = "not_found"


class Conflict(APIError):
    status = 409
    code = "conflict"


class PayloadTooLarge(APIError):
    status = 413
    code = "payload_too_large"


class UnsupportedMediaType(APIError):
    status = 415
    code = "unsupported_media_type"


class RateLimited(APIError):
    status = 429
    code = "rate_limited"


class ServiceUnavailable(APIError):
    status = 503
    code = "service_unavailable"


class GatewayTimeout(APIError):
    status = 504
    code = "timeout"


class APIConnectionError(TuneserveError):
    """No answer came: the connection could not be made, or broke, or timed out."""

    code = "connection_error"


class APITimeoutError(APIConnectionError):
    code = "timeout"


class WaitTimeout(TuneserveError, TimeoutError):
    """``jobs.wait`` or ``sweeps.wait`` gave up before the job or sweep finished; ``.last``
    holds what was last seen of it."""

    code = "wait_timeout"

    def __init__(self, message: str, *, last: Any = None) -> None:
        super().__init__(message)
        self.last = last


_BY_STATUS: dict[int, type[APIError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    415: UnsupportedMediaType,
    422: InvalidInput,
    429: RateLimited,
    503: ServiceUnavailable,
    504: GatewayTimeout,
}


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` in seconds (the service sends whole seconds); None if absent or not a
    number (an HTTP date is not honoured: the service never sends one)."""
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return max(0.0, seconds) if seconds == seconds else None  # NaN is not a wait


def error_from_response(response: httpx.Response, body: bytes | None = None) -> APIError:
    """The exception for an error ``response`` (its body already read, or given)."""
    raw = response.content if body is None else body
    code: str | None = None
    message = response.reason_phrase or f"HTTP {response.status_code}"
    details: Any = None
    try:
        payload = json.loads(raw) if raw else None
    except ValueError:
        payload = None
    error = payload.get("error") if isinstance(payload, dict) else None
    if isinstance(error, dict):
        code = str(error["code"]) if error.get("code") is not None else None
        message = str(error.get("message") or message)
        details = error.get("details")
    elif raw:
        message = raw[:500].decode("utf-8", "replace")
    cls = _BY_STATUS.get(response.status_code, APIError)
    return cls(
        message,
        status=response.status_code,
        code=code,
        details=details,
        response=response,
    )
