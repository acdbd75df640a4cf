"""TLS contexts for the three listeners, and the client certificate a request came with."""

from __future__ import annotations

import ssl
from functools import lru_cache
from pathlib import Path

from aiohttp import web
from cryptography import x509

from dls.pki import Pki

__all__ = [
    "LISTENERS",
    "TlsFileError",
    "admin_context",
    "client_certificate",
    "device_context",
    "listener_context",
    "secure_context",
]

LISTENERS = ("device", "secure", "admin")


class TlsFileError(Exception):
    """A certificate, key or CA file a listener's context could not load, and why, in
    words an operator acts on (``ssl`` names neither the file nor, often, the problem)."""

    def __init__(self, files: str, reason: str) -> None:
        super().__init__(f"{files}: {reason}")
        self.files = files
        self.reason = reason


def listener_context(
    listener: str, pki: Pki, *, client_certificates: bool = True
) -> ssl.SSLContext:
    """The context ``listener`` (one of LISTENERS) serves with, read from the files now."""
    if listener == "device":
        return device_context(pki, client_certificates=client_certificates)
    if listener == "secure":
        return secure_context(pki)
    if listener == "admin":
        return admin_context(pki)
    raise ValueError(f"no listener {listener!r}")


def _server_context(pki: Pki) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    # TLS 1.2 is the floor: every supported phone firmware speaks it, and 1.0/1.1 are broken.
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    # Several chains (ECDSA and RSA) may be loaded; OpenSSL picks by the client's signature
    # algorithms. Session tickets stay at Python's default: with none, clients that do not
    # set TCP_NODELAY stall ~40 ms per request on delayed ACKs.
    for cert_file, key_file in pki.server_chains:
        try:
            context.load_cert_chain(cert_file, key_file)
        except OSError as exc:  # ssl.SSLError included
            raise TlsFileError(f"{cert_file} {key_file}", _reason(exc)) from exc
    return context


def _trust(context: ssl.SSLContext, cafile: Path) -> None:
    try:
        context.load_verify_locations(cafile=cafile)
    except OSError as exc:
        raise TlsFileError(str(cafile), _reason(exc)) from exc


def _reason(exc: OSError) -> str:
    if isinstance(exc, ssl.SSLError):
        if exc.reason == "KEY_VALUES_MISMATCH":
            return "the key is not the certificate's"
        if exc.reason == "NO_CERTIFICATE_OR_CRL_FOUND":
            return "no PEM certificate in the file"
        return exc.reason or "no PEM certificate chain and key in the files"  # "PEM lib"
    return exc.strerror or str(exc)  # "No such file or directory", "Permission denied"


def admin_context(pki: Pki) -> ssl.SSLContext:
    context = _server_context(pki)
    context.verify_mode = ssl.CERT_NONE
    return context


def device_context(pki: Pki, *, client_certificates: bool = True) -> ssl.SSLContext:
    """Client certificate requested but optional, or not requested at all.

    Python's ssl cannot request a certificate without verifying it, and it sends no CA
    names in the CertificateRequest (there is no API for OpenSSL's client CA list), which
    RFC 5246 7.4.4 and RFC 8446 4.2.4 read as "any certificate will do". A phone that
    presents its factory certificate whenever one is asked for, from a CA not loaded
    here, therefore fails the handshake. Vendor CA bundles belong in
    ``certs/vendor-ca/*.pem``; where phones authenticate with Digest only, the setting
    ``device_client_certificates`` turns the request off.
    """
    context = _server_context(pki)
    if not client_certificates:
        return context  # CERT_NONE: no CertificateRequest is sent
    context.verify_mode = ssl.CERT_OPTIONAL
    _trust(context, pki.device_ca_cert)
    for bundle in pki.vendor_ca_files():
        _trust(context, bundle)
    return context


def secure_context(pki: Pki) -> ssl.SSLContext:
    """Client certificate required, issued by our device CA and nothing else."""
    context = _server_context(pki)
    context.verify_mode = ssl.CERT_REQUIRED
    _trust(context, pki.device_ca_cert)
    return context


def client_certificate(request: web.BaseRequest) -> x509.Certificate | None:
    """The verified certificate the client presented on this connection, if any."""
    transport = request.transport
    if transport is None:
        return None
    ssl_object = transport.get_extra_info("ssl_object")
    if ssl_object is None:
        return None
    der = ssl_object.getpeercert(binary_form=True)
    return _parse(der) if der else None


# Only certificates that passed verification reach this, one per device: a bounded cache
# saves the parse on every keep-alive request.
@lru_cache(maxsize=4096)
def _parse(der: bytes) -> x509.Certificate:
    return x509.load_der_x509_certificate(der)
