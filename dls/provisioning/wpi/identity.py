"""What identifies a Unify phone: its MAC, as the registry stores it, from any spelling.

Phones write ``mac-addr`` as ``00:1A:E8:12:34:56`` [DG p.33]; DCMP's ``device-id`` and
certificates may use other separators. The registry keys devices by 12 lower-case hex
digits; anything else is not a MAC and identifies no device.
"""

from __future__ import annotations

import re

from cryptography import x509
from cryptography.x509.oid import NameOID

__all__ = ["certificate_mac", "plain_mac"]

_SEPARATORS = re.compile(r"[:\-.\s]")
_MAC = re.compile(r"[0-9a-f]{12}")


def plain_mac(value: str | None) -> str | None:
    """``value`` as 12 lower-case hex digits, or None if it is not a MAC."""
    if not value or len(value) > 32:
        return None
    plain = _SEPARATORS.sub("", value).lower()
    return plain if _MAC.fullmatch(plain) else None


def certificate_mac(certificate: x509.Certificate | None) -> str | None:
    """The MAC a device certificate of ours names: CN and serialNumber must agree.

    ``dls.pki.issue_device_certificate`` writes the MAC into both; a certificate where
    they differ was not issued by us the usual way and identifies nobody.
    """
    if certificate is None:
        return None
    subject = certificate.subject
    names = subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    serials = subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)
    if len(names) != 1 or len(serials) != 1:
        return None
    common_name, serial = names[0].value, serials[0].value
    if not isinstance(common_name, str) or not isinstance(serial, str):
        return None
    mac = plain_mac(common_name)
    return mac if mac is not None and mac == plain_mac(serial) else None
