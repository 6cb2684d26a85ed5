"""The exceptions reading an upload raises, and how a value is named in their messages.

A problem the uploader must fix raises :class:`IngestFailure` with a message that says where;
a configured limit that was passed raises :class:`LimitExceeded`, which becomes a 413 (sizes)
or 422 (counts) with its own code (:mod:`app.datasets.limits`).
"""

from __future__ import annotations

from typing import Any, Self

from pydantic import BaseModel

from app.errors import AppError, InvalidInput, PayloadTooLarge


class IngestFailure(Exception):
    """A fatal, user-fixable problem with the uploaded file; the message says what and where."""


class LimitExceeded(IngestFailure):
    """The file passes one of the configured caps: a size (413) or a count (422).

    ``details`` names the setting and its value (and where, when known)."""

    def __init__(self, message: str, *, code: str, status: int, details: dict[str, Any]) -> None:
        super().__init__(message)
        self.code = code
        self.status = status
        self.details = details

    def to_app_error(self) -> AppError:
        cls = PayloadTooLarge if self.status == 413 else InvalidInput
        return cls(str(self), code=self.code, details=self.details)


def json_type(value: Any) -> str:
    """The JSON name of a Python value's type, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list | tuple):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def limit_details(setting: str, limit: float, **extra: Any) -> dict[str, Any]:
    """A :class:`LimitExceeded`'s ``details``: the setting (``TUNESERVE_<setting>``), its value,
    and what was found (strings cut to 200 characters; None values left out)."""
    found = {
        key: value[:200] if isinstance(value, str) else value
        for key, value in extra.items()
        if value is not None
    }
    return {"setting": f"TUNESERVE_{setting}", "limit": limit, **found}


class SettingsLimits(BaseModel):
    """Caps named like the settings they come from."""

    @classmethod
    def from_settings(cls, settings: Any) -> Self:
        """Limits from :class:`app.config.Settings`."""
        return cls(**{name: getattr(settings, name) for name in cls.model_fields})
