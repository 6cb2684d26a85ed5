"""One error base class; one JSON shape for every error.

Every error the service returns looks like::

    {"error": {"code": "not_found", "message": "...", "details": ...}}

Exception tree (raise these below the router, never ``HTTPException``)::

    AppError                      500 internal
    ├── Unauthorized              401 unauthorized (with ``WWW-Authenticate: Bearer``)
    ├── Forbidden                 403 forbidden (the key lacks the route's scope)
    ├── NotFound                  404 not_found
    ├── Conflict                  409 conflict
    ├── PayloadTooLarge           413 payload_too_large
    ├── InvalidInput              422 invalid_input
    │   └── DatasetInvalid        422 dataset_invalid (details: the validation report)
    ├── UnsupportedMediaType      415 unsupported_media_type
    ├── RateLimited               429 rate_limited (with ``Retry-After``)
    ├── ServiceUnavailable        503 service_unavailable
    └── GatewayTimeout            504 timeout
"""

from __future__ import annotations

import math
from typing import Any


class AppError(Exception):
    status_code: int = 500
    code: str = "internal"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        details: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.details = details
        self.headers: dict[str, str] = dict(headers or {})

    def to_body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}


class Unauthorized(AppError):
    status_code = 401
    code = "unauthorized"

    def __init__(self, message: str, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.headers.setdefault("WWW-Authenticate", 'Bearer realm="tuneserve"')


class Forbidden(AppError):
    status_code = 403
    code = "forbidden"


class NotFound(AppError):
    status_code = 404
    code = "not_found"


class Conflict(AppError):
    status_code = 409
    code = "conflict"


class PayloadTooLarge(AppError):
    status_code = 413
    code = "payload_too_large"


class UnsupportedMediaType(AppError):
    status_code = 415
    code = "unsupported_media_type"


class InvalidInput(AppError):
    status_code = 422
    code = "invalid_input"


class DatasetInvalid(InvalidInput):
    code = "dataset_invalid"


class RateLimited(AppError):
    status_code = 429
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after_s: float, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after_s = max(1, math.ceil(retry_after_s))
        self.headers.setdefault("Retry-After", str(self.retry_after_s))


class ServiceUnavailable(AppError):
    status_code = 503
    code = "service_unavailable"


class GatewayTimeout(AppError):
    status_code = 504
    code = "timeout"
