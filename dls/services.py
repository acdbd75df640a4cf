"""The per-process service container handed to every application under ``SERVICES``."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from dls.config import Settings
from dls.db.reads import PointReads
from dls.db.writes import WriteBursts
from dls.devices.catalog import ModelCatalog
from dls.devices.effective import DecodedLayers
from dls.devices.models import Scope
from dls.firmware.runtime import FirmwareRuntime
from dls.pki import Pki
from dls.provisioning.ledger import Ledger
from dls.secretbox import SecretBox

__all__ = ["SERVICES", "Services"]

# The levels many devices share: a tenant's thousands of phones, one tenant document.
SHARED_SCOPES = (Scope.SYSTEM, Scope.TENANT, Scope.GROUP)
DECODED_LAYERS = 4096  # tenants and groups whose documents stay decoded


@dataclass(slots=True)
class Services:
    """What every handler may need; one per process, shared by the three applications."""

    settings: Settings
    pki: Pki
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    box: SecretBox  # secrets at rest
    catalog: ModelCatalog  # validated models
    ledger: Ledger  # buffered "last seen" facts and fetch records
    # Image store, download tokens, rollout driver; built from the fields above when absent.
    firmware: FirmwareRuntime = None  # type: ignore[assignment]
    # The device path's indexed reads without an ORM session; built from the engine.
    reads: PointReads = None  # type: ignore[assignment]
    # Its short all-or-nothing writes (WPI), likewise.
    writes: WriteBursts = None  # type: ignore[assignment]
    # Settings documents above the user, decoded with ``box``, for the device paths' renders.
    layers: DecodedLayers = None  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.reads is None:
            self.reads = PointReads(self.engine)
        if self.writes is None:
            self.writes = WriteBursts(self.engine)
        if self.layers is None:
            self.layers = DecodedLayers(SHARED_SCOPES, DECODED_LAYERS)
        if self.firmware is None:
            self.firmware = FirmwareRuntime(self.settings, self.sessions, self.box)


SERVICES = web.AppKey("services", Services)
