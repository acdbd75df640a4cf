"""Liveness, readiness and metrics for load balancers and Prometheus."""

from __future__ import annotations

import asyncio

from aiohttp import web

from dls import metrics
from dls.db.engine import ping
from dls.services import SERVICES

__all__ = ["healthz", "metrics_handler", "readyz"]

READY_TIMEOUT = 2.0  # seconds; a load balancer's probe gives up soon after


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    try:
        await asyncio.wait_for(ping(request.app[SERVICES].engine), READY_TIMEOUT)
    except Exception as exc:  # any failure to reach the database means "not ready"
        return web.json_response(
            {"status": "unavailable", "database": type(exc).__name__}, status=503
        )
    return web.json_response({"status": "ready", "database": "ok"})


async def metrics_handler(request: web.Request) -> web.Response:
    body = await asyncio.get_running_loop().run_in_executor(None, metrics.render)
    return web.Response(body=body, headers={"Content-Type": metrics.CONTENT_TYPE_LATEST})
