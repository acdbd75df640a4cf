"""Signed, expiring download tokens: the URL is the credential.

Many phones cannot authenticate a firmware download (Grandstream appends its own image
name to a directory URL; Cisco and Fanvil fetch a bare URL), so the URL a device finds in
its configuration carries a token: which device, which image, until when, and an
HMAC-SHA256 over that under a key derived from the installation's secret key
(``SecretBox.derive(TOKEN_KEY_LABEL)``), like the Digest nonces. Any instance sharing the
secret key verifies it without a database lookup.

Layout, 35 bytes, base64url without padding (47 characters, short enough for the
Grandstream P192 path): version (1), device id (4), MAC (6), image id (4), expiry in Unix
seconds (4), then the first 16 bytes of the HMAC.

Expiry is bucketed: a token issued at ``t`` expires at the end of the bucket after the one
``t`` falls in, so it lives between one and two ``ttl``. A device's configuration, which
holds the URL, then changes at most once per ``ttl``, and its rendering can be cached per
bucket instead of per request.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import struct
from dataclasses import dataclass

__all__ = ["TOKEN_KEY_LABEL", "TOKEN_LENGTH", "DownloadGrant", "DownloadTokens"]

TOKEN_KEY_LABEL = "firmware-download"  # noqa: S105 - a derivation label, not a secret
_VERSION = 1
_PAYLOAD = struct.Struct(">BI6sII")
_TAG_BYTES = 16  # 128 bits: forging needs 2^128 tries, far beyond any request budget
TOKEN_LENGTH = 47  # base64url characters of payload + tag, no padding
_MAX_ID = 2**32 - 1


@dataclass(frozen=True, slots=True)
class DownloadGrant:
    """What a valid token allows: ``device_id`` (MAC ``mac``) may fetch image ``image_id``."""

    device_id: int
    mac: str  # 12 lower-case hex digits
    image_id: int
    expires: int  # Unix seconds


class DownloadTokens:
    """Issue and verify tokens under one key; ``ttl`` in seconds (see the module doc)."""

    __slots__ = ("_key", "ttl")

    def __init__(self, key: bytes, ttl: int) -> None:
        if len(key) < 16:
            raise ValueError("the token key must have at least 128 bits")
        if ttl <= 0:
            raise ValueError("ttl must be positive")
        self._key = key
        self.ttl = ttl

    def bucket(self, now: float) -> int:
        """The expiry bucket ``now`` falls in; tokens issued in one bucket are equal."""
        return int(now // self.ttl)

    def expiry(self, now: float) -> int:
        return (self.bucket(now) + 2) * self.ttl

    def issue(self, device_id: int, mac: str, image_id: int, now: float) -> str:
        return self.issue_until(device_id, mac, image_id, self.expiry(now))

    def issue_until(self, device_id: int, mac: str, image_id: int, expires: int) -> str:
        """A token with an explicit expiry (tests, tools); ``issue`` is the normal way."""
        if not (0 < device_id <= _MAX_ID and 0 < image_id <= _MAX_ID and 0 <= expires <= _MAX_ID):
            raise ValueError("device id, image id or expiry out of range")
        payload = _PAYLOAD.pack(_VERSION, device_id, bytes.fromhex(mac), image_id, expires)
        return _encode(payload + self._tag(payload))

    def verify(self, token: str, now: float) -> DownloadGrant | None:
        """The grant if ``token`` is ours, intact and not expired; None otherwise."""
        if len(token) != TOKEN_LENGTH:
            return None
        try:
            raw = base64.urlsafe_b64decode(token + "=")
        except (binascii.Error, ValueError):
            return None
        payload, tag = raw[: _PAYLOAD.size], raw[_PAYLOAD.size :]
        if len(tag) != _TAG_BYTES or not hmac.compare_digest(tag, self._tag(payload)):
            return None
        version, device_id, mac, image_id, expires = _PAYLOAD.unpack(payload)
        if version != _VERSION or expires <= now:
            return None
        return DownloadGrant(device_id, mac.hex(), image_id, expires)

    def _tag(self, payload: bytes) -> bytes:
        return hmac.new(self._key, payload, hashlib.sha256).digest()[:_TAG_BYTES]


def _encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")
