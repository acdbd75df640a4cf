"""The admin listener's HTTP API: every module here declares endpoints on ``api``."""

from __future__ import annotations

from aiohttp import web

from dls.api import (  # noqa: F401 - importing a module declares its endpoints
    audit,
    auth,
    device_settings,
    devices,
    firmware,
    firmware_rollouts,
    groups,
    partner,
    tenants,
    tickets,
    users,
    wpi,
)
from dls.api.common import API_PREFIX, api
from dls.api.openapi import OPENAPI, build_document, openapi_handler

__all__ = ["API_PREFIX", "OPENAPI_PATH", "api", "install"]

OPENAPI_PATH = "/api/openapi.json"


def install(app: web.Application) -> None:
    api.install(app)
    app[OPENAPI] = build_document(api)
    app.router.add_get(OPENAPI_PATH, openapi_handler)
