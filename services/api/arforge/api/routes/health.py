"""``/healthz`` (process alive), ``/readyz`` (dependencies reachable), ``/metrics``."""

from __future__ import annotations

import asyncio
import hmac
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST

from ..deps import get_settings
from ..errors import ApiError, error_responses
from ..metrics import render, take_snapshot

router = APIRouter(tags=["operations"])
CHECK_TIMEOUT_S = 3.0


@router.get(
    "/healthz",
    summary="Liveness",
    responses={200: {"content": {"application/json": {"example": {"status": "ok"}}}}},
)
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


async def _check_postgres(state: Any) -> None:
    if state.pool is None:
        raise RuntimeError("no connection pool")
    await state.pool.fetchval("SELECT 1")


async def _check_nats(state: Any) -> None:
    bus = state.bus
    if bus is None or not bus.nc.is_connected:
        raise RuntimeError("not connected")
    await bus.js.account_info()


async def _check_storage(state: Any) -> None:
    if state.store is None:
        raise RuntimeError("no object store configured")
    await state.store.head("readyz/probe")


async def _run(check: Any, state: Any) -> str:
    try:
        await asyncio.wait_for(check(state), CHECK_TIMEOUT_S)
    except TimeoutError:
        return f"error: no answer within {CHECK_TIMEOUT_S:g} s"
    except Exception as exc:
        return f"error: {type(exc).__name__}: {exc}"[:300]
    return "ok"


@router.get(
    "/readyz",
    summary="Readiness: NATS, PostgreSQL and storage reachable",
    responses={
        200: {
            "content": {
                "application/json": {
                    "example": {
                        "status": "ok",
                        "checks": {"nats": "ok", "postgres": "ok", "storage": "ok"},
                    }
                }
            }
        },
        503: {
            "content": {
                "application/json": {
                    "example": {
                        "error": {"code": "not_ready", "message": "not ready: nats"},
                        "checks": {
                            "nats": "error: not connected",
                            "postgres": "ok",
                            "storage": "ok",
                        },
                    }
                }
            }
        },
    },
)
async def readyz(request: Request) -> JSONResponse:
    state = request.app.state
    names = ("nats", "postgres", "storage")
    results = await asyncio.gather(
        *(_run(c, state) for c in (_check_nats, _check_postgres, _check_storage))
    )
    checks = dict(zip(names, results, strict=True))
    failed = [n for n, r in checks.items() if r != "ok"]
    if failed:
        return JSONResponse(
            {
                "error": {"code": "not_ready", "message": f"not ready: {', '.join(failed)}"},
                "checks": checks,
            },
            status_code=503,
        )
    return JSONResponse({"status": "ok", "checks": checks})


def _check_metrics_token(request: Request) -> None:
    """401 unless the request carries the configured metrics bearer token (if any)."""
    token = get_settings(request).metrics_token
    if token is None:
        return
    given = request.headers.get("authorization", "")
    scheme, _, value = given.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        value.strip().encode(), token.get_secret_value().encode()
    ):
        raise ApiError(
            401,
            "unauthorized",
            "/metrics needs the metrics token (ARFORGE_METRICS_TOKEN) as a bearer token",
            headers={"WWW-Authenticate": "Bearer"},
        )


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    description="Open unless `ARFORGE_METRICS_TOKEN` is set; then it needs "
    "`Authorization: Bearer <that token>` (not a tenant's API key: the figures cover "
    "every tenant).",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}, **error_responses(401)},
)
async def metrics(request: Request) -> Response:
    _check_metrics_token(request)
    state = request.app.state
    if state.pool is None:
        return Response("# not ready\n", status_code=503, media_type=CONTENT_TYPE_LATEST)
    snap = await take_snapshot(state.pool, state.bus, state.registry)
    return Response(render(snap), media_type=CONTENT_TYPE_LATEST)
