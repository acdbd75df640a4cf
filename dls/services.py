"""The per-process service container handed to every application under ``SERVICES``."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from dls.config import Settings
from dls.pki import Pki

__all__ = ["SERVICES", "Services"]


@dataclass(slots=True)
class Services:
    """What every handler may need; one per process, shared by the three applications."""

    settings: Settings
    pki: Pki
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]


SERVICES = web.AppKey("services", Services)
