"""mDNS/DNS-SD advertisement of the device listener as ``_dls._tcp.local.``.

The TXT record carries what a phone or an installer tool needs to trust the server
without typing anything: the WPI path, the secure port and the CA's SHA-256 fingerprint
(to pin before the first TLS connection). The record is withdrawn on shutdown, so a
stopped server does not linger in browsers for the record's whole TTL.
"""

from __future__ import annotations

import ipaddress
import logging
import socket

from zeroconf import InterfaceChoice, ServiceInfo, get_all_addresses, get_all_addresses_v6
from zeroconf.asyncio import AsyncZeroconf

from dls import __version__
from dls.config import Settings

__all__ = ["SERVICE_TYPE", "WPI_PATH", "Advertiser"]

log = logging.getLogger(__name__)

SERVICE_TYPE = "_dls._tcp.local."
WPI_PATH = "/DeploymentService/LoginService"


class Advertiser:
    """Registers the service on start, unregisters it on stop."""

    def __init__(self, settings: Settings, ca_sha256: str) -> None:
        self._settings = settings
        self._ca_sha256 = ca_sha256
        self._zeroconf: AsyncZeroconf | None = None
        self._info: ServiceInfo | None = None

    def service_info(self) -> ServiceInfo:
        settings = self._settings
        addresses = settings.mdns_interfaces or [
            *get_all_addresses(),
            *(address[0][0] for address in get_all_addresses_v6()),
        ]
        hostname = socket.gethostname().split(".")[0] or "dls"
        return ServiceInfo(
            SERVICE_TYPE,
            f"{settings.mdns_instance}.{SERVICE_TYPE}",
            port=settings.device_port,
            properties={
                "path": WPI_PATH,
                "secure_port": str(settings.secure_port),
                "ca_sha256": self._ca_sha256.replace(":", "").lower(),
                "version": __version__,
            },
            server=f"{hostname}.local.",
            addresses=[ipaddress.ip_address(a).packed for a in addresses],
        )

    async def start(self) -> None:
        interfaces = self._settings.mdns_interfaces or InterfaceChoice.All
        self._zeroconf = AsyncZeroconf(interfaces=interfaces)
        self._info = self.service_info()
        # allow_name_change: two servers on one LAN become "dls (2)" instead of failing.
        # The coroutine returns the broadcast task; awaiting it means probing is over and
        # the name is ours when start() returns.
        await (await self._zeroconf.async_register_service(self._info, allow_name_change=True))
        log.info("advertising %s", self._info.name, extra={"fields": {"port": self._info.port}})

    async def stop(self) -> None:
        if self._zeroconf is None:
            return
        if self._info is not None:
            # Await the goodbye broadcast itself, or closing would cut it off and browsers
            # would keep the stale record for its whole TTL.
            await (await self._zeroconf.async_unregister_service(self._info))
        await self._zeroconf.async_close()
        self._zeroconf = None
