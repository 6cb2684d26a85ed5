"""Headers every response carries.

- ``X-Content-Type-Options: nosniff``: a browser never guesses a type (a JSON error echoing
  user input is never run as HTML);
- ``Referrer-Policy: no-referrer``, ``X-Frame-Options: DENY``;
- ``Content-Security-Policy``: nothing may load or run (``default-src 'none'``) unless the
  response set its own policy (the docs pages allow their local scripts and styles);
- ``Cache-Control: no-store`` on ``/v1`` answers, which are tenant data.
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

DEFAULT_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"

_ALWAYS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": DEFAULT_CSP,
}


class SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        tenant_data = scope["path"].startswith("/v1/")

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in _ALWAYS.items():
                    if name not in headers:
                        headers[name] = value
                if tenant_data and "Cache-Control" not in headers:
                    headers["Cache-Control"] = "no-store"
            await send(message)

        await self.app(scope, receive, with_headers)
