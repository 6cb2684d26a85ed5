"""The web dashboard at ``/ui``: one HTML page and its static scripts and styles, served by the
API from files in this package (nothing from a CDN, no build step, no separate server).

The page talks to ``/v1`` with the API key the user signs in with, as any client does; the
key is kept in the tab's ``sessionStorage`` and sent as ``Authorization: Bearer``. Live
progress and curves come from the job's event stream with ``?progress=true``, read with
``fetch`` (an ``EventSource`` cannot send the header). Its policy allows scripts, styles and
requests from this origin only, nothing inline, and images from this origin, ``data:`` and
``blob:`` (a plot fetched with the key, an image picked for the try-it box); everything a
user or a dataset wrote is put on the page as text, never as markup. docs/dashboard.md
tells what each view shows.
"""

from __future__ import annotations

import html
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

from app.contract.strategies import STRATEGY_CONFIGS
from app.contract.tasks import TASKS
from app.docs_pages import content_policy

UI_URL = "/ui"
STATIC_URL = "/ui/static"
STATIC_DIR = Path(__file__).parent / "static"
UI_CSP = content_policy(img_src="'self' data: blob:")


def index_page(root: str) -> str:
    """The page, with what the scripts need to know of this deployment in data attributes:
    where the API is, and the strategy and task names of the contract."""
    template = (STATIC_DIR / "index.html").read_text(encoding="utf-8")
    return template.format(
        root=html.escape(root),
        static=html.escape(root + STATIC_URL),
        strategies=html.escape(" ".join(STRATEGY_CONFIGS)),
        tasks=html.escape(" ".join(TASKS)),
    )


def install_ui(app: FastAPI) -> None:
    """Serve the dashboard at ``/ui/`` (``/ui`` redirects there) and its files under
    ``/ui/static``."""
    app.mount(STATIC_URL, StaticFiles(directory=STATIC_DIR), name="ui-static")

    @app.get(UI_URL, include_in_schema=False)
    def ui_redirect(request: Request) -> RedirectResponse:
        return RedirectResponse(request.scope.get("root_path", "").rstrip("/") + UI_URL + "/")

    @app.get(UI_URL + "/", include_in_schema=False)
    def ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "").rstrip("/")
        return HTMLResponse(
            index_page(root),
            headers={"Content-Security-Policy": UI_CSP, "Cache-Control": "no-cache"},
        )
