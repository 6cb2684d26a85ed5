"""Links in responses: absolute from ``TUNESERVE_PUBLIC_URL`` when it is set, else paths.

Never from the request's ``Host`` header, which the client chooses (a link built from it can
point another user's browser at an attacker's host if a proxy caches the response).
"""

from __future__ import annotations

from typing import Any

from fastapi import Request

from app.config import get_settings


def link(request: Request, route_name: str, **params: Any) -> str:
    path = str(request.app.url_path_for(route_name, **params))
    base = get_settings().public_url.rstrip("/")
    return f"{base}{path}" if base else path
