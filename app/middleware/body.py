"""Request bodies: bounded while they are read, and JSON that is text.

:class:`BodyLimit` (outside authentication) refuses a body whose ``Content-Length`` is past the
route's cap at once, and counts the bytes of a body sent without one while it is read: no
route ever holds more than the cap. The dataset upload has its own, larger cap
(``TUNESERVE_MAX_UPLOAD_BYTES``, enforced again on the file part by the upload parser), predict
its own (``TUNESERVE_PREDICT_MAX_BODY_BYTES``: it may carry image files); every other route has
``TUNESERVE_MAX_JSON_BODY_BYTES``.

:class:`JsonText` (inside authentication) refuses a JSON body that is not valid UTF-8 or that
escapes a lone UTF-16 surrogate (``"\\ud800"``): Python's ``json`` accepts both and gives a
``str`` no database, file or response can encode, which used to surface as a 500 somewhere
later (or, once, as a job committed with a string that made every later read fail).
"""

from __future__ import annotations

import json
import re
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.config import Settings
from app.error_handlers import error_response
from app.errors import AppError, InvalidInput, PayloadTooLarge
from app.route_table import matching_route

UPLOAD_PATH = "/v1/datasets"
PREDICT_PATH = re.compile(r"^/v1/models/[^/]+/predict/?$")
#: multipart framing and the small form fields around the file
UPLOAD_OVERHEAD_BYTES = 1024 * 1024
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
#: a JSON escape that may be a surrogate: only then is the body parsed here
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def _content_length(scope: Scope) -> int | None:
    for key, value in scope.get("headers", ()):
        if key == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _json_or_untyped(content_type: bytes) -> bool:
    """Bodies a route may read as JSON: no type, or a JSON type (forms, images and other
    types are the route's to read or refuse)."""
    media = content_type.split(b";")[0].strip()
    return media in (b"", b"application/json") or media.endswith(b"+json")


def _content_type(scope: Scope) -> bytes:
    for key, value in scope.get("headers", ()):
        if key == b"content-type":
            return bytes(value).lower()
    return b""


class BodyLimit:
    def __init__(self, app: ASGIApp, *, settings: Settings) -> None:
        self.app = app
        self.json_cap = settings.max_json_body_bytes
        self.upload_cap = settings.max_upload_bytes + UPLOAD_OVERHEAD_BYTES
        self.predict_cap = settings.predict_max_body_bytes

    def cap_for(self, scope: Scope) -> int:
        if scope["method"] != "POST":
            return self.json_cap
        if scope["path"].rstrip("/") == UPLOAD_PATH:
            return self.upload_cap
        return self.predict_cap if PREDICT_PATH.match(scope["path"]) else self.json_cap

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cap = self.cap_for(scope)
        declared = _content_length(scope)
        if declared is not None and declared > cap:
            await error_response(_too_large(cap))(scope, receive, send)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > cap:
                    raise _too_large(cap)
            return message

        await self.app(scope, counted, send)


def _too_large(cap: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"The request body is larger than this route accepts ({cap} bytes).",
        code="body_too_large",
        details={"max_bytes": cap},
    )


class JsonText:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # only the methods whose bodies routes read (another method answers 405 unread)
        if scope["type"] != "http" or scope["method"] not in _BODY_METHODS:
            await self.app(scope, receive, send)
            return
        if not _json_or_untyped(_content_type(scope)) or matching_route(scope) is None:
            await self.app(scope, receive, send)
            return
        try:
            body = await _read_all(receive)
            check_json_text(body)
        except AppError as exc:
            await error_response(exc)(scope, receive, send)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


async def _read_all(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def check_json_text(body: bytes) -> None:
    """``InvalidInput`` when ``body`` is not UTF-8, or is JSON holding a lone surrogate."""
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInput(
            f"The request body is not valid UTF-8 (byte {exc.start}).", code="invalid_input"
        ) from None
    if not _SURROGATE_ESCAPE.search(body):
        return
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        return  # not JSON: the route's own parsing answers 422
    where = _lone_surrogate(document)
    if where is not None:
        raise InvalidInput(
            f"The request body holds a string that is not valid Unicode (a lone UTF-16 "
            f"surrogate) at {where}.",
            code="invalid_input",
            details={"path": where},
        )


def _lone_surrogate(document: Any) -> str | None:
    """The path (``body.a.0``) of the first string, key or value, that UTF-8 cannot encode."""
    stack: list[tuple[str, Any]] = [("body", document)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, str):
            if not _encodable(value):
                return path
        elif isinstance(value, dict):
            for key, item in value.items():
                if not _encodable(key):
                    return path
                stack.append((f"{path}.{key}", item))
        elif isinstance(value, list):
            stack.extend((f"{path}.{i}", item) for i, item in enumerate(value))
    return None


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
