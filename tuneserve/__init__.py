"""tuneserve's Python SDK: ``from tuneserve import Client``.

A client of the tuneserve REST API over httpx; it imports nothing of the service (no torch,
no transformers). See docs/sdk.md.
"""

from tuneserve._version import __version__
from tuneserve.async_client import AsyncClient
from tuneserve.client import Client
from tuneserve.errors import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    BadRequest,
    Conflict,
    Forbidden,
    GatewayTimeout,
    InvalidInput,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    ServiceUnavailable,
    TuneserveError,
    Unauthorized,
    UnsupportedMediaType,
    WaitTimeout,
)
from tuneserve.models import (
    BaseModelInfo,
    Dataset,
    Job,
    JobEvent,
    Key,
    KeyCreated,
    Model,
    Page,
    Prediction,
    Sweep,
)
from tuneserve.strategies import Hyperparameters, StrategyConfig

__all__ = [
    "APIConnectionError",
    "APIError",
    "APITimeoutError",
    "AsyncClient",
    "BadRequest",
    "BaseModelInfo",
    "Client",
    "Conflict",
    "Dataset",
    "Forbidden",
    "GatewayTimeout",
    "Hyperparameters",
    "InvalidInput",
    "Job",
    "JobEvent",
    "Key",
    "KeyCreated",
    "Model",
    "NotFound",
    "Page",
    "PayloadTooLarge",
    "Prediction",
    "RateLimited",
    "ServiceUnavailable",
    "StrategyConfig",
    "Sweep",
    "TuneserveError",
    "Unauthorized",
    "UnsupportedMediaType",
    "WaitTimeout",
    "__version__",
]
