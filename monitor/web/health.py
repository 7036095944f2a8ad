"""What operators and orchestrators ask: /healthz (the process answers), /readyz (the store answers and is migrated), /metrics."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy.exc import SQLAlchemyError

from monitor.store.db import schema_problem

log = logging.getLogger(__name__)

router = APIRouter(include_in_schema=False)
OPEN_PATHS = ("/healthz", "/readyz", "/metrics")  # answered without the archive's token: they show no article


@router.get("/healthz")
def healthz() -> dict:
    """Alive: the process answers HTTP. Nothing else is checked, so a slow store never gets the process restarted."""
    return {"status": "ok"}


@router.get("/readyz")
def readyz(request: Request) -> JSONResponse:
    """Ready: the store answers and its schema is at the newest migration; 503 with the reason otherwise."""
    try:
        with request.app.state.archive.sessions() as session:
            problem = schema_problem(session.connection())
    except SQLAlchemyError as exc:
        problem = f"the database does not answer: {type(exc).__name__}"
        log.warning("readyz: %s: %s", problem, exc)
    if problem:
        return JSONResponse({"status": "not ready", "detail": problem}, status_code=503)
    return JSONResponse({"status": "ready"})


@router.get("/metrics")
def metrics(request: Request) -> Response:
    """Prometheus' text format of the registry the app was built with (404 when it was built without one)."""
    registry = request.app.state.metrics
    if registry is None:
        return JSONResponse({"detail": "this archive was started without metrics"}, status_code=404)
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
