"""Builds the three aiohttp applications and wires the services into them."""

from __future__ import annotations

from aiohttp import web

from dls import api
from dls.api import health
from dls.firmware.serving import FirmwareDownloads
from dls.middleware import LISTENER, request_context
from dls.provisioning.files.detect import Detection, Detector
from dls.provisioning.files.handler import FileProvisioner
from dls.provisioning.wpi import handler as wpi
from dls.services import SERVICES, Services

__all__ = ["build_admin_app", "build_device_app", "build_secure_app"]

# WPI bodies are small XML documents; 1 MiB is the limit and aiohttp's default.
DEVICE_BODY_LIMIT = 1024 * 1024


def _application(services: Services, listener: str, client_max_size: int) -> web.Application:
    app = web.Application(middlewares=[request_context], client_max_size=client_max_size)
    app[SERVICES] = services
    app[LISTENER] = listener
    return app


def build_device_app(services: Services) -> web.Application:
    app = _application(services, "device", DEVICE_BODY_LIMIT)
    app.router.add_get("/healthz", health.healthz)
    FileProvisioner(services, services.ledger).install(app)
    _firmware_downloads(services).install(app)
    wpi.install(app, services, secure=False)
    return app


def build_secure_app(services: Services) -> web.Application:
    app = _application(services, "secure", DEVICE_BODY_LIMIT)
    app.router.add_get("/healthz", health.healthz)
    FileProvisioner(services, services.ledger).install(app)
    _firmware_downloads(services).install(app)
    wpi.install(app, services, secure=True)
    return app


def _firmware_downloads(services: Services) -> FirmwareDownloads:
    detector = Detector(services.catalog.files)

    def mac_of(user_agent: str | None) -> str | None:
        # The MAC a phone names in its User-Agent (Yealink, Snom, Grandstream, ...): a
        # download URL of another device is refused. Poly's names none.
        detection = detector.detect("", user_agent)
        return detection.mac if isinstance(detection, Detection) else None

    runtime = services.firmware
    return FirmwareDownloads(
        runtime.tokens,
        runtime.store,
        runtime.image,
        runtime.downloads,
        mac_of,
        accel_redirect=services.settings.firmware_accel_redirect,
        send_timeout=services.settings.send_timeout,
    )


def build_admin_app(services: Services) -> web.Application:
    app = _application(services, "admin", DEVICE_BODY_LIMIT)
    app.router.add_get("/healthz", health.healthz)
    app.router.add_get("/readyz", health.readyz)
    app.router.add_get("/metrics", health.metrics_handler)
    api.install(app)
    return app
