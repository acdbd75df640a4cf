"""Certificates: the private root CA, the server certificate and the device-issuing CA.

Created once, on first start, under ``certs_dir``. Existing files are never overwritten, so
an operator can drop in their own chain (``server_cert_file``/``server_key_file``) or keep
a CA across upgrades. Private keys are written with mode 0600 from the first byte.

The device CA is a separate root rather than an intermediate of the server CA: the secure
listener trusts *only* it, and a leaked server key must not let anyone mint phone identities.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from dls.config import ConfigError, KeyType, Settings, make_directory

__all__ = [
    "CertificateInfo",
    "DeviceCredentials",
    "Pki",
    "Unreadable",
    "describe",
    "ensure_pki",
    "fingerprint",
    "issue_device_certificate",
]

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
_Loaded = TypeVar("_Loaded")  # what _read returns

CA_VALIDITY = dt.timedelta(days=3650)
SERVER_VALIDITY = dt.timedelta(days=825)  # the longest lifetime Apple-era TLS clients accept
# Phones are not re-enrolled; a certificate ends by the device's record (WPI secure mode,
# the fingerprint dls.devices.client_certificates keeps), not by a revocation list.
DEVICE_VALIDITY = dt.timedelta(days=3650)
CLOCK_SKEW = dt.timedelta(hours=1)  # phones boot with wrong clocks until SNTP answers


@dataclass(frozen=True, slots=True)
class Pki:
    """Paths of the PEM files the listeners load."""

    ca_cert: Path
    ca_key: Path
    server_chains: tuple[tuple[Path, Path], ...]  # (certificate chain, key), first is preferred
    device_ca_cert: Path
    device_ca_key: Path
    vendor_ca_dir: Path

    def vendor_ca_files(self) -> list[Path]:
        """Vendor CA bundles whose client certificates the device listener accepts."""
        if not self.vendor_ca_dir.is_dir():
            return []
        return sorted(self.vendor_ca_dir.glob("*.pem"))


@dataclass(frozen=True, slots=True)
class DeviceCredentials:
    certificate_pem: bytes
    key_pem: bytes


@dataclass(frozen=True, slots=True)
class CertificateInfo:
    path: Path
    subject: str
    issuer: str
    sans: list[str]
    not_after: dt.datetime
    sha256: str
    position: tuple[int, int] = (1, 1)  # which certificate of the file, of how many


@dataclass(frozen=True, slots=True)
class Unreadable:
    """A file ``describe`` found no certificate in, and why."""

    path: Path
    reason: str


def ensure_pki(settings: Settings) -> Pki:
    """Create whatever is missing of the CA, server and device-CA material. A file that
    is there but cannot be used (a damaged CA, its key gone, a key left without its
    certificate) is a ConfigError naming it: the operator's to mend, never overwritten."""
    try:
        return _ensure_pki(settings)
    except FileExistsError as exc:
        raise ConfigError(str(exc)) from None


def _ensure_pki(settings: Settings) -> Pki:
    certs = make_directory(settings.certs_dir, "certs_dir")
    ca_cert, ca_key = certs / "ca.pem", certs / "ca.key"
    if not ca_cert.exists():
        _write_ca(ca_cert, ca_key, "dls Root CA")

    if settings.server_cert_file or settings.server_key_file:
        if not (settings.server_cert_file and settings.server_key_file):
            raise ValueError("server_cert_file and server_key_file must be set together")
        chains: tuple[tuple[Path, Path], ...] = (
            (settings.server_cert_file, settings.server_key_file),
        )
    else:
        wanted = {
            KeyType.ECDSA: ["ecdsa"],
            KeyType.RSA: ["rsa"],
            KeyType.BOTH: ["ecdsa", "rsa"],
        }[settings.server_key_type]
        chains = tuple(
            _ensure_server(certs, kind, settings.hostnames, ca_cert, ca_key) for kind in wanted
        )

    device_cert, device_key = certs / "device-ca.pem", certs / "device-ca.key"
    if not device_cert.exists():
        _write_ca(device_cert, device_key, "dls Device CA")
    return Pki(ca_cert, ca_key, chains, device_cert, device_key, certs / "vendor-ca")


def issue_device_certificate(pki: Pki, mac: str) -> DeviceCredentials:
    """A client certificate for one phone: CN and serialNumber carry its MAC."""
    issuer_cert = x509.load_pem_x509_certificate(pki.device_ca_cert.read_bytes())
    issuer_key = serialization.load_pem_private_key(pki.device_ca_key.read_bytes(), None)
    assert isinstance(issuer_key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey)
    # RSA-2048 because older Unify firmware (OpenStage V3) only handles RSA client keys.
    # Our guess from the vendor's certificate guides; ECDSA may work on newer firmware.
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, mac),
            x509.NameAttribute(NameOID.SERIAL_NUMBER, mac),
        ]
    )
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + DEVICE_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(_key_usage(ca=False, rsa_key=True), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
        .sign(issuer_key, hashes.SHA256())
    )
    return DeviceCredentials(
        cert.public_bytes(serialization.Encoding.PEM),
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )


def fingerprint(cert_path: Path) -> str:
    """SHA-256 fingerprint of the first certificate in a PEM file, colon-separated hex."""
    return _sha256(_read(cert_path, x509.load_pem_x509_certificate, "the root CA"))


def _sha256(cert: x509.Certificate) -> str:
    return cert.fingerprint(hashes.SHA256()).hex(":").upper()


def _read(path: Path, load: Callable[[bytes], _Loaded], what: str) -> _Loaded:
    """``load`` applied to the file; a ConfigError naming the file and ``what`` it is
    for if it is missing, unreadable or not what ``load`` takes."""
    try:
        return load(path.read_bytes())
    except OSError as exc:
        raise ConfigError(f"{path}: {exc.strerror or exc}, {what}") from None
    except ValueError:
        raise ConfigError(f"{path}: not a PEM file of the kind expected, {what}") from None


def describe(paths: Iterable[Path]) -> list[CertificateInfo | Unreadable]:
    """Every certificate of each file: a chain's intermediates expire too, and each
    certificate of a vendor bundle is a CA the device listener trusts."""
    infos: list[CertificateInfo | Unreadable] = []
    for path in paths:
        try:
            certificates = x509.load_pem_x509_certificates(path.read_bytes())
        except OSError as exc:
            infos.append(Unreadable(path, exc.strerror or str(exc)))
            continue
        except ValueError:
            infos.append(Unreadable(path, "no PEM certificate in the file"))
            continue
        count = len(certificates)
        infos += [_info(path, cert, (index, count)) for index, cert in enumerate(certificates, 1)]
    return infos


def _info(path: Path, cert: x509.Certificate, position: tuple[int, int]) -> CertificateInfo:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        sans = [str(v) for v in san.get_values_for_type(x509.DNSName)] + [
            str(v) for v in san.get_values_for_type(x509.IPAddress)
        ]
    except x509.ExtensionNotFound:
        sans = []
    return CertificateInfo(
        path=path,
        subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(),
        sans=sans,
        not_after=cert.not_valid_after_utc,
        sha256=_sha256(cert),
        position=position,
    )


def _ensure_server(
    certs: Path, kind: str, hostnames: list[str], ca_cert: Path, ca_key: Path
) -> tuple[Path, Path]:
    suffix = "" if kind == "ecdsa" else "-rsa"
    cert_path, key_path = certs / f"server{suffix}.pem", certs / f"server{suffix}.key"
    if cert_path.exists():
        return cert_path, key_path
    needed = f"needed to issue {cert_path.name}"
    issuer_cert = _read(ca_cert, x509.load_pem_x509_certificate, needed)
    issuer_key = _read(ca_key, lambda pem: serialization.load_pem_private_key(pem, None), needed)
    if not isinstance(issuer_key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise ConfigError(f"{ca_key}: not an ECDSA or RSA key, {needed}")
    key = _new_key(kind)
    names: list[x509.GeneralName] = []
    for name in dict.fromkeys([*hostnames, "localhost", "127.0.0.1"]):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            names.append(x509.DNSName(name))
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostnames[0])]))
        .issuer_name(issuer_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + SERVER_VALIDITY)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(_key_usage(ca=False, rsa_key=kind == "rsa"), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
        .sign(issuer_key, hashes.SHA256())
    )
    _write_key(key_path, key)
    # The chain includes the CA so phones that were not given it can still show what it is.
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM) + ca_cert.read_bytes())
    return cert_path, key_path


def _write_ca(cert_path: Path, key_path: Path, common_name: str) -> None:
    # ECDSA P-256: cheap signatures, and every phone TLS stack from the last decade verifies it.
    key = _new_key("ecdsa")
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "dls"),
        ]
    )
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(ca=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_key(key_path, key)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _new_key(kind: str) -> PrivateKey:
    if kind == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return ec.generate_private_key(ec.SECP256R1())


def _key_usage(*, ca: bool, rsa_key: bool = False) -> x509.KeyUsage:
    # keyEncipherment only for RSA leaf keys: TLS 1.2 RSA key exchange on old phones needs it,
    # and on an EC key it is meaningless.
    return x509.KeyUsage(
        digital_signature=not ca,
        content_commitment=False,
        key_encipherment=rsa_key and not ca,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def _write_key(path: Path, key: PrivateKey) -> None:
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    # O_EXCL: never overwrite a key; 0o600 from creation, not chmod after the fact.
    if path.exists():
        raise FileExistsError(f"{path} exists without its certificate; move it away to regenerate")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
