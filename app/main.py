"""The FastAPI application. Imports no torch, transformers or worker code."""

from __future__ import annotations

import logging

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from sqlalchemy import text

from app.base_models.router import router as base_models_router
from app.datasets.router import router as datasets_router
from app.db import get_engine
from app.error_handlers import install_error_handlers
from app.jobs.router import router as jobs_router
from app.models.router import router as models_router
from app.sweeps.router import router as sweeps_router
from app.tasks import broker_ping


def create_app() -> FastAPI:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    api = FastAPI(
        title="tuneserve",
        version="0.1.0",
        description="Fine-tune pretrained models with transfer-learning strategies; serve them.",
    )
    install_error_handlers(api)
    for router in (
        datasets_router,
        base_models_router,
        jobs_router,
        models_router,
        sweeps_router,
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

    return api


app = create_app()
