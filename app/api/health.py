"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from app.api.deps import CtxDep
from app.api.problems import json_response, problem
from app.metrics import LIVE_SESSIONS

router = APIRouter(tags=["health"])
PING_TIMEOUT = 5.0


@router.get("/healthz", summary="Liveness",
            description="200 while the process serves; it checks nothing else.",
            responses={200: {"content": {"application/json": {
                "example": {"status": "ok"}}}}})
async def healthz() -> dict[str, str]:
    """200 while the process serves."""
    return {"status": "ok"}


@router.get("/readyz", summary="Readiness",
            description="200 when the database answers and the blob store takes a write, with "
            "whether the server asks for keys; 503 naming the one that does not.",
            responses={200: {"description": "Ready", "content": {"application/json": {
                "schema": {"type": "object", "required": ["status", "checks", "auth"],
                           "properties": {"status": {"type": "string"},
                                          "checks": {"type": "object"},
                                          "auth": {"type": "string"}}},
                "example": {"status": "ready", "checks": {"database": "ok", "store": "ok"},
                            "auth": "keys"}}}},
                       503: {"description": "A dependency is down"}})
async def readyz(ctx: CtxDep) -> Response:
    """200 when the database and the blob store answer, else 503 naming the one that does not."""
    checks = {"database": ctx.db.ping, "store": ctx.store.check_writable}
    results: dict[str, str] = {}
    for name, ping in checks.items():
        try:
            await asyncio.wait_for(asyncio.to_thread(ping), PING_TIMEOUT)
            results[name] = "ok"
        except TimeoutError:
            results[name] = f"no answer within {PING_TIMEOUT:g} s"
        except Exception as exc:  # noqa: BLE001 - any failure means not ready
            results[name] = getattr(exc, "detail", None) or f"{type(exc).__name__}: {exc}"
    down = [n for n, r in results.items() if r != "ok"]
    if down:
        return problem(503, f"not ready: {', '.join(down)} unavailable",
                       type_slug="not-ready", checks=results)
    auth = "keys" if ctx.settings.admin_token else "open (FLEETLITE_ADMIN_TOKEN is not set)"
    return json_response({"status": "ready", "checks": results, "auth": auth})


@router.get("/metrics", response_class=Response, summary="Prometheus metrics",
            description="Request, train-step, session and job metrics in Prometheus text "
            "format.",
            responses={200: {"description": "Prometheus text format", "content": {
                CONTENT_TYPE_LATEST: {"schema": {"type": "string"}, "example":
                                      "fleetlite_live_sessions 3.0\n"}}}})
async def metrics(ctx: CtxDep) -> Response:
    """Prometheus text format."""
    LIVE_SESSIONS.set(len(ctx.pool))
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
