"""Client certificates from dls's device CA for 3rd-party phones and ATAs.

Mutual TLS is one of the ways a phone proves it is the device it names (the others:
HTTP Digest, a vendor's factory certificate). An admin has dls issue one; certificate and
private key are shown once and not kept, and only the certificate's fingerprint is
recorded on the device. A certificate of this CA is accepted from the device it was
issued to only while it is that device's current one, so issuing another, revoking, or
registering a retired MAC again ends the old one at once, without a revocation list;
the TLS handshake has already checked the chain and the validity period.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from dls.devices.models import Device, DeviceStatus
from dls.errors import DomainError
from dls.pki import Pki, issue_device_certificate

__all__ = ["IssuedCertificate", "assign", "fingerprint", "make", "revoke"]


@dataclass(frozen=True, slots=True)
class IssuedCertificate:
    certificate_pem: str
    private_key_pem: str
    ca_pem: str  # the device CA, for phones that want the chain
    sha256: str
    not_after: dt.datetime


def fingerprint(certificate: x509.Certificate) -> str:
    """SHA-256 of the DER certificate, lower-case hex: what the device row records."""
    return certificate.fingerprint(hashes.SHA256()).hex()


async def make(device: Device, pki: Pki) -> IssuedCertificate:
    """A new certificate for ``device`` (its MAC in CN and serialNumber, RSA-2048 as
    ``issue_device_certificate`` makes them); nothing recorded yet (``assign``)."""
    _check_issuable(device)
    # An RSA key takes tens of milliseconds to generate: not on the event loop, and not
    # while a transaction holds the database's write lock.
    credentials = await asyncio.to_thread(issue_device_certificate, pki, device.mac)
    certificate = x509.load_pem_x509_certificate(credentials.certificate_pem)
    return IssuedCertificate(
        certificate_pem=credentials.certificate_pem.decode(),
        private_key_pem=credentials.key_pem.decode(),
        ca_pem=pki.device_ca_cert.read_text(),
        sha256=fingerprint(certificate),
        not_after=certificate.not_valid_after_utc,
    )


def assign(device: Device, issued: IssuedCertificate) -> dict[str, Any]:
    """``issued`` becomes the device's one accepted certificate, replacing any earlier
    one; the changes, for the audit. The device is checked again: it may have been
    retired while the key was made."""
    _check_issuable(device)
    replaced = device.client_certificate_sha256
    device.client_certificate_sha256 = issued.sha256
    device.client_certificate_not_after = issued.not_after
    return {
        "client_certificate": {"old": replaced, "new": issued.sha256},
        "not_after": issued.not_after.isoformat(),
    }


def _check_issuable(device: Device) -> None:
    if device.status is DeviceStatus.RETIRED:
        raise DomainError("status", "a retired device gets no certificate; register it again")


def revoke(device: Device) -> dict[str, Any]:
    """No certificate of dls's device CA is accepted from ``device`` any more."""
    if device.client_certificate_sha256 is None:
        return {}
    old = device.client_certificate_sha256
    device.client_certificate_sha256 = device.client_certificate_not_after = None
    return {"client_certificate": {"old": old, "new": None}}
