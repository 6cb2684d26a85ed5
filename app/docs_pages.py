"""Swagger UI at ``/docs`` and ReDoc at ``/redoc``, served from files on this host.

FastAPI's own pages load Swagger UI and ReDoc from a CDN (blank on an offline host) and start
them with an inline script. Here the bundles come from the ``fastapi-offline`` package (which
ships Swagger UI's and ReDoc's standalone builds as package data) under ``/docs/static``, the
pages start them with small scripts served from this host too, and the pages carry a strict
Content-Security-Policy: scripts, styles, images and requests from this origin only, nothing
inline (but the styles ReDoc injects, on its page), nothing framed. The security-headers
middleware keeps this policy (it sets its default one only where a response has none).
"""

from __future__ import annotations

import html
from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles

DOCS_URL = "/docs"
REDOC_URL = "/redoc"
STATIC_URL = "/docs/static"
SWAGGER_INIT_URL = "/docs/swagger-init.js"
REDOC_INIT_URL = "/docs/redoc-init.js"


def content_policy(*extra: str, style_src: str = "'self'", img_src: str = "'self' data:") -> str:
    """A page's Content-Security-Policy: its own origin's scripts, styles, images and
    requests, nothing inline (but what ``style_src`` allows), never framed."""
    return "; ".join(
        (
            "default-src 'none'",
            "script-src 'self'",
            f"style-src {style_src}",
            f"img-src {img_src}",
            "font-src 'self' data:",
            "connect-src 'self'",
            *extra,
            "frame-ancestors 'none'",
            "base-uri 'none'",
            "form-action 'none'",
        )
    )


#: Swagger UI needs only this origin: nothing inline at all
SWAGGER_CSP = content_policy()
#: ReDoc's styled components inject <style> elements (inline styles, never scripts, are
#: allowed) and its search index runs in a worker it makes from a blob: URL of its own code
REDOC_CSP = content_policy("worker-src blob:", style_src="'self' 'unsafe-inline'")


SWAGGER_INIT_JS = """\
(function () {
  var node = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: node.getAttribute("data-openapi-url"),
    dom_id: "#swagger-ui",
    layout: "BaseLayout",
    deepLinking: true,
    showExtensions: true,
    showCommonExtensions: true,
    persistAuthorization: false,
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset]
  });
})();
"""

REDOC_INIT_JS = """\
(function () {
  var node = document.getElementById("redoc");
  Redoc.init(node.getAttribute("data-openapi-url"), {}, node);
})();
"""

_PAGE = """\
<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<link rel="icon" type="image/png" href="{static}/favicon.png">
{styles}</head>
<body>
<div id="{node}" data-openapi-url="{openapi_url}"></div>
<script src="{bundle}"></script>
<script src="{init}"></script>
</body>
</html>
"""


def static_dir() -> Path:
    """The Swagger UI and ReDoc files shipped by ``fastapi-offline``."""
    return Path(str(files("fastapi_offline") / "static"))


def _page(
    request: Request,
    *,
    title: str,
    node: str,
    bundle: str,
    init: str,
    css: str | None,
    policy: str,
) -> HTMLResponse:
    root = request.scope.get("root_path", "").rstrip("/")
    openapi_url = request.app.openapi_url or "/openapi.json"
    styles = f'<link rel="stylesheet" href="{root}{STATIC_URL}/{css}">\n' if css else ""
    body = _PAGE.format(
        title=html.escape(title),
        static=root + STATIC_URL,
        styles=styles,
        node=node,
        openapi_url=html.escape(root + openapi_url),
        bundle=f"{root}{STATIC_URL}/{bundle}",
        init=root + init,
    )
    return HTMLResponse(body, headers={"Content-Security-Policy": policy})


def _script(source: str) -> Response:
    return Response(
        source,
        media_type="text/javascript",
        headers={"Cache-Control": "no-cache"},
    )


def install_docs_pages(app: FastAPI) -> None:
    """Serve ``/docs`` and ``/redoc`` offline (create the app with ``docs_url=None`` and
    ``redoc_url=None`` so FastAPI's CDN pages are not served as well)."""
    app.mount(STATIC_URL, StaticFiles(directory=static_dir()), name="docs-static")

    @app.get(DOCS_URL, include_in_schema=False)
    def swagger_ui(request: Request) -> HTMLResponse:
        return _page(
            request,
            title=f"{app.title} - Swagger UI",
            node="swagger-ui",
            bundle="swagger-ui-bundle.js",
            init=SWAGGER_INIT_URL,
            css="swagger-ui.css",
            policy=SWAGGER_CSP,
        )

    @app.get(REDOC_URL, include_in_schema=False)
    def redoc(request: Request) -> HTMLResponse:
        return _page(
            request,
            title=f"{app.title} - ReDoc",
            node="redoc",
            bundle="redoc.standalone.js",
            init=REDOC_INIT_URL,
            css=None,
            policy=REDOC_CSP,
        )

    @app.get(SWAGGER_INIT_URL, include_in_schema=False)
    def swagger_init() -> Response:
        return _script(SWAGGER_INIT_JS)

    @app.get(REDOC_INIT_URL, include_in_schema=False)
    def redoc_init() -> Response:
        return _script(REDOC_INIT_JS)
