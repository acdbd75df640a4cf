"""HTTP Digest authentication (RFC 7616) for devices, server side.

Phones authenticate configuration fetches with Digest far more widely than with client
certificates, and most embedded stacks know only MD5; SHA-256 is offered as well, after
MD5, because several phone stacks take the first challenge they see. Nonces are stateless:
a timestamp signed with a key derived from the secret key, so any worker or instance can
check them and nothing is written per challenge. A nonce is valid for NONCE_LIFETIME;
within it a captured response can be replayed for the same URI (the price of keeping the
poll path free of writes; the channel is TLS).

No maintained server-side Digest implementation exists for aiohttp, so this is written
here against the RFC; the simulated devices authenticate with aiohttp's own client-side
DigestAuthMiddleware, which checks this code against an independent implementation.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
from typing import NamedTuple

__all__ = ["NONCE_LIFETIME", "DigestVerifier", "ha1", "parse_authorization"]

NONCE_LIFETIME = 300  # seconds
REALM = "dls"
_ALGORITHMS = {"MD5": hashlib.md5, "SHA-256": hashlib.sha256}
# name=token or name="quoted", a quoted string matched as runs of plain characters between
# escapes (one step per run, not per character: half the cost on a phone's header). Phones
# send no escapes at all: without a backslash the simpler pattern reads the same, in half
# the time again.
_PARAM = re.compile(r'(\w+)=(?:"([^"\\]*(?:\\.[^"\\]*)*)"|([^\s,]+))')
_PLAIN_PARAM = re.compile(r'(\w+)=(?:"([^"]*)"|([^\s,]+))')
MAX_HEADER_LENGTH = 2048
_NONCES_REMEMBERED = 4096  # one per NONCE_LIFETIME per worker is typical


class Credentials(NamedTuple):  # a tuple: built per request, cheaper than a dataclass
    username: str
    realm: str
    nonce: str
    uri: str
    response: str
    algorithm: str
    qop: str | None
    nc: str | None
    cnonce: str | None


def parse_authorization(header: str) -> Credentials | None:
    if len(header) > MAX_HEADER_LENGTH:
        return None
    if not header.isascii():
        try:
            header.encode()
        except UnicodeEncodeError:  # bytes that are not UTF-8: aiohttp's lone surrogates
            return None  # hashed, they raised: a 500 where any other requester gets 401
    scheme, _, rest = header.partition(" ")
    if scheme.lower() != "digest":
        return None
    if "\\" in rest:
        found = [
            (key, quoted.replace('\\"', '"') if "\\" in quoted else quoted, bare)
            for key, quoted, bare in _PARAM.findall(rest)
        ]
    else:
        found = _PLAIN_PARAM.findall(rest)
    params = {key.lower(): bare or quoted for key, quoted, bare in found}
    try:
        return Credentials(
            username=params["username"],
            realm=params["realm"],
            nonce=params["nonce"],
            uri=params["uri"],
            response=params["response"].lower(),
            algorithm=params.get("algorithm", "MD5").upper(),
            qop=params.get("qop"),
            nc=params.get("nc"),
            cnonce=params.get("cnonce"),
        )
    except KeyError:
        return None


class DigestVerifier:
    __slots__ = ("_key", "_nonces")

    def __init__(self, key: bytes) -> None:
        self._key = key
        # Nonces whose signature checked out, with their stamp: a phone repeats its nonce
        # for NONCE_LIFETIME, so the HMAC is computed once per nonce, not per request.
        self._nonces: dict[str, int] = {}

    def _sign(self, stamp: str) -> str:
        return hmac.new(self._key, stamp.encode(), hashlib.sha256).hexdigest()[:32]

    def nonce(self, now: float | None = None) -> str:
        stamp = str(int(now if now is not None else time.time()))
        return base64.b64encode(f"{stamp}:{self._sign(stamp)}".encode()).decode()

    def nonce_state(self, nonce: str, now: float | None = None) -> str:
        """ "fresh", "stale" (ours but expired: the client should retry) or "bad"."""
        issued = self._nonces.get(nonce)
        if issued is None:
            try:
                stamp, signature = base64.b64decode(nonce, validate=True).decode().split(":")
                issued = int(stamp)
            except (ValueError, UnicodeDecodeError):
                return "bad"
            if not hmac.compare_digest(signature, self._sign(stamp)):
                return "bad"
            if len(self._nonces) >= _NONCES_REMEMBERED:
                self._nonces.clear()
            self._nonces[nonce] = issued
        age = (now if now is not None else time.time()) - issued
        return "fresh" if 0 <= age <= NONCE_LIFETIME else "stale"

    def challenges(self, *, stale: bool = False) -> list[str]:
        nonce = self.nonce()
        extra = ", stale=true" if stale else ""
        return [
            f'Digest realm="{REALM}", qop="auth", algorithm={name}, nonce="{nonce}"{extra}'
            for name in ("MD5", "SHA-256")
        ]

    def verify(self, credentials: Credentials, method: str, username: str, password: str) -> bool:
        """Whether the response proves ``password``; constant time in the comparison."""
        secret = ha1(credentials.username, credentials.algorithm, password)
        return self.verify_ha1(credentials, method, username, secret)

    def verify_ha1(
        self, credentials: Credentials, method: str, username: str, secret: str | None
    ) -> bool:
        """``verify`` with the password's HA1 (see ``ha1``), which callers may keep."""
        hash_function = _ALGORITHMS.get(credentials.algorithm)
        if hash_function is None or secret is None or credentials.realm != REALM:
            return False

        def h(text: str) -> str:
            return hash_function(text.encode()).hexdigest()

        # Phones spell the MAC user name in either case; the response was computed over
        # the spelling the phone sent, so hash that one once it names this device.
        if credentials.username.lower() != username.lower():
            return False
        ha2 = h(f"{method}:{credentials.uri}")
        if credentials.qop == "auth" and credentials.nc and credentials.cnonce:
            expected = h(
                f"{secret}:{credentials.nonce}:{credentials.nc}:{credentials.cnonce}:auth:{ha2}"
            )
        elif credentials.qop is None:  # RFC 2069 style, still sent by old stacks
            expected = h(f"{secret}:{credentials.nonce}:{ha2}")
        else:
            return False
        return hmac.compare_digest(expected, credentials.response)


def ha1(username: str, algorithm: str, password: str) -> str | None:
    """H(username:realm:password) for the algorithm and user-name spelling the client
    used (RFC 7616 3.4.2); None for an algorithm we do not offer."""
    hash_function = _ALGORITHMS.get(algorithm)
    if hash_function is None:
        return None
    return hash_function(f"{username}:{REALM}:{password}".encode()).hexdigest()
