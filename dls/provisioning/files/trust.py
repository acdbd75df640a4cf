"""Whether a file request comes from the device it names: the answer to "who is asking".

A device proves itself with a client certificate (dls's device CA: the one issued to it;
a vendor's CA: one naming its MAC), with HTTP Digest (its own password, user name = MAC),
or not at all where its tenant allows legacy MAC-only trust. Anything else gets a
challenge or the 404 an unknown MAC gets, with the same body and about the same work
(a dummy password is hashed for unknown devices), so answers do not tell registered
MACs apart; unknown and retired MACs are recorded as sightings for the operator, and a
registered device's refusal (why, when, from where) on the device for its admin.

A nonce dls did not issue, or issued under another key (before ``dls secrets
rotate-key``), gets a new challenge, as an expired one does: a phone that kept its last
nonce across the rotation authenticates again instead of meeting 404s.
"""

from __future__ import annotations

import functools
import hmac
import logging
import re
import secrets
from typing import NamedTuple

from aiohttp import web
from cryptography import x509

from dls.db.types import utcnow
from dls.devices.client_certificates import fingerprint
from dls.devices.facts import DeviceFacts
from dls.devices.models import DeviceStatus, RefusalReason
from dls.devices.registry import digest_purpose
from dls.provisioning.files.detect import Detection
from dls.provisioning.files.digest import DigestVerifier, ha1, parse_authorization
from dls.provisioning.files.outcomes import Outcome
from dls.provisioning.ledger import Ledger, Refused, Sighting
from dls.secretbox import SecretBox, SecretError
from dls.tls import client_certificate

__all__ = ["NOT_FOUND_BODY", "DeviceTrust", "Refusal", "not_found"]

log = logging.getLogger(__name__)

HA1_CACHE_ENTRIES = 100_000  # per worker: one per device that authenticates with Digest
NOT_FOUND_BODY = b"not found\n"
# Hashed for requests that name no device with a password, for equal timing; random per
# process, and never taken as proof (``check``).
_DUMMY_PASSWORD = secrets.token_urlsafe(24)
_MAC_IN_TEXT = re.compile(
    r"(?<![0-9A-Fa-f])(?:[0-9A-Fa-f]{2}[:-]?){5}[0-9A-Fa-f]{2}(?![0-9A-Fa-f])"
)


class Refusal(NamedTuple):
    """The answer for a requester that did not prove itself, and why: for the operator's
    count (``outcomes``); the answer itself does not say."""

    response: web.Response
    outcome: Outcome


class DeviceTrust:
    """Decides, per request, whether the requester proved it is the device it names."""

    def __init__(self, box: SecretBox, ledger: Ledger, device_ca: x509.Name) -> None:
        self._box = box
        self._ledger = ledger
        self._device_ca = device_ca
        self._digest = DigestVerifier(box.derive("digest-nonce"))
        self._device_ha1 = functools.lru_cache(maxsize=HA1_CACHE_ENTRIES)(self._ha1)

    def check(
        self, request: web.Request, detection: Detection, facts: DeviceFacts | None
    ) -> Refusal | None:
        """None when the requester proved it is this device; else the answer to give."""
        device = facts if facts is not None and facts.status is not DeviceStatus.RETIRED else None
        certificate_failed = False
        if device is None:
            self._ledger.sighted(
                Sighting(
                    mac=detection.mac or "",
                    vendor=detection.vendor,
                    model=detection.model,
                    firmware_version=detection.firmware_version,
                    address=request.remote,
                    user_agent=request.headers.get("User-Agent"),
                    at=utcnow(),
                )
            )
        else:
            certificate = client_certificate(request)
            if self._certificate_proves(certificate, device):
                return None
            if device.legacy_mac_only:
                return None
            certificate_failed = certificate is not None
        header = request.headers.get("Authorization")
        credentials = parse_authorization(header) if header else None
        if credentials is None:
            if device is not None and certificate_failed:
                # A phone that relies on its certificate has no password to answer the
                # challenge with: this is where it stops, and its admin should know why.
                self._note(device, RefusalReason.WRONG_CERTIFICATE, request)
            return Refusal(self._challenge(stale=False), Outcome.CHALLENGED)
        nonce = self._digest.nonce_state(credentials.nonce)
        if nonce != "fresh":  # expired, or not one of ours (any more): try again
            return Refusal(self._challenge(stale=nonce == "stale"), Outcome.CHALLENGED)
        if (
            device is not None
            and device.digest_password is not None
            and credentials.username.lower() == device.mac  # the user name is the MAC
        ):
            secret = self._device_ha1(
                device.id, device.digest_password, credentials.username, credentials.algorithm
            )
        else:
            # Hash a dummy password for unknown devices, so both take about the same time.
            secret = ha1(credentials.username, credentials.algorithm, _DUMMY_PASSWORD)
        valid = self._digest.verify_ha1(credentials, request.method, detection.mac or "", secret)
        if device is None:
            return Refusal(not_found(), Outcome.UNKNOWN)
        # A device without a password is proven by none: the dummy is there for the time.
        valid = valid and device.digest_password is not None
        # The request-target as the device sent it (RFC 7616 3.4: "uri"), not re-encoded.
        if valid and credentials.uri == request.raw_path:
            return None
        if device.digest_password is None:
            reason = RefusalReason.NO_PASSWORD
        elif valid:
            reason = RefusalReason.WRONG_URI
        else:
            reason = RefusalReason.WRONG_PASSWORD
        self._note(device, reason, request)
        return Refusal(not_found(), Outcome.REFUSED)

    def _note(self, device: DeviceFacts, reason: RefusalReason, request: web.Request) -> None:
        self._ledger.refused(Refused(device.id, reason, request.remote, utcnow()))

    def _certificate_proves(
        self, certificate: x509.Certificate | None, device: DeviceFacts
    ) -> bool:
        """Whether the verified client certificate proves ``device``: one dls's device CA
        issued must be the device's current one (``dls.devices.client_certificates``); a
        vendor's factory certificate must name its MAC."""
        if certificate is None:
            return False
        if certificate.issuer == self._device_ca:
            expected = device.client_certificate_sha256
            return expected is not None and hmac.compare_digest(fingerprint(certificate), expected)
        return _certificate_names(certificate, device.mac)

    def _ha1(self, device_id: int, ciphertext: str, username: str, algorithm: str) -> str | None:
        """The device's Digest HA1 for the spelling and algorithm it uses; memoised (see
        __init__), so a poll does not decrypt the password again. The key holds the
        ciphertext, so a new password (or a rotated key) is a new entry."""
        try:
            password = self._box.decrypt(ciphertext, digest_purpose(device_id))
        except SecretError:
            log.warning("digest password does not decrypt; was the key rotated?")
            return None
        return ha1(username, algorithm, password)

    def _challenge(self, *, stale: bool) -> web.Response:
        response = web.Response(status=401, body=b"authentication required\n")
        for challenge in self._digest.challenges(stale=stale):
            response.headers.add("WWW-Authenticate", challenge)
        return response


def not_found() -> web.Response:
    return web.Response(status=404, body=NOT_FOUND_BODY, content_type="text/plain")


def _certificate_names(certificate: x509.Certificate, mac: str) -> bool:
    """Whether a verified client certificate from a vendor CA names this MAC.

    Vendor factory certificates carry it in CN or a SAN in their own spelling (colons,
    upper case); we accept any of those fields whose hex digits equal the MAC. This is
    our reading of vendor certificates, not a documented format.
    """
    values = [str(attribute.value) for attribute in certificate.subject]
    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        values += [str(name) for name in san.value.get_values_for_type(x509.DNSName)]
    except x509.ExtensionNotFound:
        pass
    return any(
        re.sub(r"[:-]", "", found.group(0)).lower() == mac
        for value in values
        for found in _MAC_IN_TEXT.finditer(value)
    )
