"""The FastAPI application. Imports no torch, transformers or worker code."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response
from sqlalchemy import text

from app.base_models.router import router as base_models_router
from app.config import get_settings
from app.datasets.router import router as datasets_router
from app.db import get_engine
from app.docs_pages import install_docs_pages
from app.error_handlers import install_error_handlers
from app.inference.gateway import close_gateway
from app.jobs.router import router as jobs_router
from app.limits.redis_client import close_limits_redis
from app.limits.router import router as limits_router
from app.metrics import RequestMetricsMiddleware, metrics_response
from app.middleware.auth_gate import AuthGate
from app.middleware.body import BodyLimit, JsonText
from app.middleware.principals import PrincipalCache
from app.middleware.security_headers import SecurityHeaders
from app.models.router import router as models_router
from app.openapi import install_openapi
from app.sweeps.router import router as sweeps_router
from app.tasks import broker_ping
from app.tenants.router import router as keys_router
from app.ui import install_ui
from app.webhooks.router import router as webhooks_router


def create_app() -> FastAPI:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await close_gateway()  # the inference reply listener of this event loop
        await close_limits_redis()

    api = FastAPI(
        lifespan=lifespan,
        title="tuneserve",
        version="0.1.0",
        description="Fine-tune pretrained models with transfer-learning strategies; serve them.",
        docs_url=None,  # app.docs_pages serves /docs and /redoc offline
        redoc_url=None,
    )
    install_error_handlers(api)
    settings = get_settings()
    api.state.principals = PrincipalCache(settings.auth_cache_s)
    # the last added runs first: headers on everything; metrics see every status; the body is
    # bounded before the caller is known; the caller is known before the body is read
    api.add_middleware(JsonText)
    api.add_middleware(AuthGate, settings=settings, principals=api.state.principals)
    api.add_middleware(BodyLimit, settings=settings)
    api.add_middleware(RequestMetricsMiddleware)
    api.add_middleware(SecurityHeaders)
    for router in (
        datasets_router,
        base_models_router,
        jobs_router,
        models_router,
        sweeps_router,
        keys_router,
        limits_router,
        webhooks_router,
    ):
        api.include_router(router)

    @api.get("/healthz", tags=["health"])
    def healthz() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    @api.get("/readyz", tags=["health"])
    def readyz() -> JSONResponse:
        """The database and the queue answer."""
        checks: dict[str, str] = {}
        try:
            with get_engine().connect() as conn:
                conn.execute(text("SELECT 1"))
            checks["database"] = "ok"
        except Exception as exc:
            checks["database"] = f"unavailable: {type(exc).__name__}"
        checks["queue"] = "ok" if broker_ping(timeout=1.0) else "unavailable"
        ok = all(v == "ok" for v in checks.values())
        return JSONResponse(
            {"status": "ok" if ok else "unavailable", "checks": checks},
            status_code=200 if ok else 503,
        )

    @api.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        """Prometheus metrics (text format). No tenant data; expose it to monitoring only."""
        return metrics_response()

    install_openapi(api)  # the honest document: security, upload form, errors, links
    install_docs_pages(api)  # /docs and /redoc from local files
    install_ui(api)  # the dashboard at /ui, from files in app/ui/static
    return api


app = create_app()
