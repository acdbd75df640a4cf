"""Contact-me: ask a phone to open a ``solicited`` session, the only request dls sends.

The phone reports where to reach it in ``contact-me-uri`` [DG p.27]; we POST
``ContactMe=true`` with our address and port there and expect ``204`` [DG p.14-15]. That
URI is phone-supplied, so it is a server-side request forgery channel unless checked:
:func:`contact_target` accepts only plain HTTP to an IP literal equal to the address the
phone's own WPI requests came from (no host names, so no DNS rebinding; no user info; no
redirects are followed). Anything else is refused and logged by the caller.

The sender is bounded: a few concurrent requests, a short timeout, a few retries with
backoff. Reference §8 warns that two requests within a second can crash a phone's web
server, so retries start one second apart and the caller keeps the contact gap.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from urllib.parse import urlencode, urlsplit

import aiohttp

__all__ = [
    "CONTACT_BACKOFF",
    "CONTACT_RETRIES",
    "CONTACT_TIMEOUT",
    "DEFAULT_CONTACT_PATH",
    "MAX_CONCURRENT_CONTACTS",
    "ContactRefused",
    "ContactSender",
    "contact_target",
]

log = logging.getLogger(__name__)

DEFAULT_CONTACT_PATH = "/contact_dls.html/ContactDLS"  # [DG p.14]
CONTACT_TIMEOUT = 5.0  # seconds per attempt; a phone on the LAN answers in milliseconds
CONTACT_RETRIES = 3  # attempts per contact
CONTACT_BACKOFF = 1.0  # seconds before the second attempt, doubled after each failure
MAX_CONCURRENT_CONTACTS = 16  # per process
MAX_URI_LENGTH = 255


class ContactRefused(ValueError):
    """The reported contact-me URI is not one we send to; ``reason`` is a fixed text."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _address(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    address = ipaddress.ip_address(value)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def contact_target(uri: str | None, source_address: str | None) -> str:
    """The URL to POST to, rebuilt from checked parts; raises :class:`ContactRefused`."""
    if not uri or len(uri) > MAX_URI_LENGTH:
        raise ContactRefused("no usable contact-me-uri")
    if not source_address:
        raise ContactRefused("no known source address")
    try:
        parts = urlsplit(uri.strip())
        port = parts.port or 80
        host = _address(parts.hostname or "")
        source = _address(source_address)
    except ValueError:
        raise ContactRefused("contact-me-uri host is not an IP address") from None
    if parts.scheme.lower() != "http":
        raise ContactRefused("contact-me-uri is not plain http")
    if parts.username is not None or parts.password is not None:
        raise ContactRefused("contact-me-uri carries user info")
    if host != source:
        raise ContactRefused("contact-me-uri names another host than the phone's address")
    path = parts.path or DEFAULT_CONTACT_PATH
    if not path.startswith("/") or any(ch in path for ch in "\\\r\n\t "):
        raise ContactRefused("contact-me-uri path is malformed")
    literal = f"[{host}]" if host.version == 6 else str(host)
    return f"http://{literal}:{port}{path}"


class ContactSender:
    """POSTs ContactMe requests, bounded in concurrency, time and retries."""

    def __init__(
        self,
        *,
        max_concurrent: int = MAX_CONCURRENT_CONTACTS,
        timeout: float = CONTACT_TIMEOUT,
        retries: int = CONTACT_RETRIES,
        backoff: float = CONTACT_BACKOFF,
    ) -> None:
        self._limit = asyncio.Semaphore(max_concurrent)
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._retries = retries
        self._backoff = backoff
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(
            timeout=self._timeout,
            cookie_jar=aiohttp.DummyCookieJar(),
            trust_env=False,  # never through a proxy from the environment
            connector=aiohttp.TCPConnector(limit=0, force_close=True),
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def contact(self, url: str, dls_address: str | None, dls_port: int) -> bool:
        """True once the phone answered 2xx; False after the last failed attempt."""
        if self._session is None:
            raise RuntimeError("ContactSender.start() was not awaited")
        fields = [("ContactMe", "true")]
        if dls_address:
            fields += [("dls_ip_addr", dls_address), ("dls_ip_port", str(dls_port))]
        body = urlencode(fields)
        delay = self._backoff
        for attempt in range(1, self._retries + 1):
            async with self._limit:
                status = await self._post(url, body)
            if status is not None and 200 <= status < 300:
                return True
            if status is not None and status < 500:
                return False  # refused or redirected: another attempt would fare the same
            if attempt < self._retries:
                await asyncio.sleep(delay)
                delay *= 2
        return False

    async def _post(self, url: str, body: str) -> int | None:
        assert self._session is not None
        try:
            async with self._session.post(
                url,
                data=body,
                headers={"Content-Type": "application/x-www-form-urlencoded"},
                allow_redirects=False,
            ) as response:
                return response.status
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            log.debug("contact-me attempt failed", extra={"fields": {"error": type(exc).__name__}})
            return None
