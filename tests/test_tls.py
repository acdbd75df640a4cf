"""Who may vouch for a phone's client certificate: our device CA, never the system's CAs."""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import pytest

from dls.certificate_reload import ListenerContexts
from dls.config import ConfigError, load_settings
from dls.pki import Pki, ensure_pki, issue_device_certificate
from dls.server import prepare
from dls.tls import TlsFileError, device_context, listener_context, secure_context

MAC = "001a2b3c4d5e"


def _client(server: Pki, issuer: Pki, tmp_path: Path) -> ssl.SSLContext:
    issued = issue_device_certificate(issuer, MAC)
    cert, key = tmp_path / "client.pem", tmp_path / "client.key"
    cert.write_bytes(issued.certificate_pem)
    key.write_bytes(issued.key_pem)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(cafile=server.ca_cert)
    context.load_cert_chain(cert, key)
    return context


class _Connection(NamedTuple):
    client: ssl.SSLObject
    server: ssl.SSLObject
    to_client: ssl.MemoryBIO  # what the client reads
    from_server: ssl.MemoryBIO  # what the server wrote


def _connect(client: ssl.SSLContext, server: ssl.SSLContext) -> _Connection:
    """Both sides in memory, their handshake messages exchanged until both are done."""
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    client_side = client.wrap_bio(c_in, c_out, server_hostname="localhost")
    server_side = server.wrap_bio(s_in, s_out, server_side=True)
    for _ in range(10):
        for side in (client_side, server_side):
            with contextlib.suppress(ssl.SSLWantReadError):
                side.do_handshake()
        s_in.write(c_out.read())
        c_in.write(s_out.read())
    # TLS 1.3: the server checks the client's certificate after the client finished.
    server_side.do_handshake()
    return _Connection(client_side, server_side, c_in, s_out)


def _handshake(client: ssl.SSLContext, server: ssl.SSLContext) -> bytes | None:
    """The client certificate the server accepted, if any."""
    return _connect(client, server).server.getpeercert(binary_form=True)


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return ensure_pki(load_settings(None, certs_dir=tmp_path / "certs"))


@pytest.fixture
def public_ca(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Pki:
    """A CA the system trusts (as if it were one of the public ones)."""
    other = ensure_pki(load_settings(None, certs_dir=tmp_path / "public"))
    monkeypatch.setenv("SSL_CERT_FILE", str(other.device_ca_cert))
    monkeypatch.setenv("SSL_CERT_DIR", str(tmp_path / "no-such-dir"))
    return other


def test_a_certificate_from_a_ca_the_system_trusts_does_not_open_the_secure_listener(
    pki: Pki, public_ca: Pki, tmp_path: Path
) -> None:
    with pytest.raises(ssl.SSLError):
        _handshake(_client(pki, public_ca, tmp_path), secure_context(pki))


def test_the_device_listener_does_not_take_it_for_a_phone_either(
    pki: Pki, public_ca: Pki, tmp_path: Path
) -> None:
    with pytest.raises(ssl.SSLError):
        _handshake(_client(pki, public_ca, tmp_path), device_context(pki))


def test_our_device_ca_vouches_for_its_phones(pki: Pki, tmp_path: Path) -> None:
    assert _handshake(_client(pki, pki, tmp_path), secure_context(pki))
    assert _handshake(_client(pki, pki, tmp_path), device_context(pki))


def test_the_device_listener_names_no_acceptable_issuer(pki: Pki) -> None:
    """Why the request can be turned off: Python's ssl has no client CA list, so the
    CertificateRequest names no issuer even with our device CA loaded, and a phone may
    send any certificate it has (RFC 5246 7.4.4). Read in TLS 1.2, where the message is
    not encrypted."""
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.check_hostname, client.verify_mode = False, ssl.CERT_NONE
    client.maximum_version = ssl.TLSVersion.TLSv1_2
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    client_side = client.wrap_bio(c_in, c_out)
    server_side = device_context(pki).wrap_bio(s_in, s_out, server_side=True)
    with contextlib.suppress(ssl.SSLWantReadError):
        client_side.do_handshake()
    s_in.write(c_out.read())
    with contextlib.suppress(ssl.SSLWantReadError):
        server_side.do_handshake()
    request = _handshake_message(s_out.read(), message_type=13)  # CertificateRequest
    assert request is not None
    types_end = 1 + request[0]
    algorithms_end = types_end + 2 + int.from_bytes(request[types_end : types_end + 2])
    assert int.from_bytes(request[algorithms_end : algorithms_end + 2]) == 0  # no CA names


def _handshake_message(flight: bytes, message_type: int) -> bytes | None:
    """The body of the first handshake message of ``message_type`` in plaintext records."""
    handshake = b""
    while len(flight) >= 5:
        length = int.from_bytes(flight[3:5])
        if flight[0] == 22:  # handshake record
            handshake += flight[5 : 5 + length]
        flight = flight[5 + length :]
    while len(handshake) >= 4:
        length = int.from_bytes(handshake[1:4])
        if handshake[0] == message_type:
            return handshake[4 : 4 + length]
        handshake = handshake[4 + length :]
    return None


def test_with_the_request_off_a_foreign_certificate_no_longer_fails_the_handshake(
    pki: Pki, public_ca: Pki, tmp_path: Path
) -> None:
    context = device_context(pki, client_certificates=False)
    assert context.verify_mode is ssl.CERT_NONE
    # The handshake completes and the server holds no certificate: the request is served
    # as one without (the device path then asks for Digest).
    assert _handshake(_client(pki, public_ca, tmp_path), context) is None
    assert _handshake(_client(pki, pki, tmp_path), context) is None


@pytest.mark.parametrize("context", [device_context, secure_context])
def test_a_handshake_ends_with_a_session_ticket(
    pki: Pki, tmp_path: Path, context: Callable[[Pki], ssl.SSLContext]
) -> None:
    """Tickets stay on: with nothing written after the handshake, clients that do not set
    TCP_NODELAY stall ~40 ms per request on delayed ACKs (ab: 45 ms against 2.3 ms)."""
    connection = _connect(_client(pki, pki, tmp_path), context(pki))
    connection.server.write(b"x")  # tickets go out with the first data at the latest
    connection.to_client.write(connection.from_server.read())
    assert connection.client.read(1) == b"x"
    session = connection.client.session
    assert session is not None and session.has_ticket


def test_a_vendor_bundle_without_a_certificate_is_named(pki: Pki) -> None:
    pki.vendor_ca_dir.mkdir(exist_ok=True)
    broken = pki.vendor_ca_dir / "broken.pem"
    broken.write_text("not a certificate\n")
    with pytest.raises(TlsFileError) as refused:
        listener_context("device", pki)
    assert (refused.value.files, refused.value.reason) == (
        str(broken),
        "no PEM certificate in the file",
    )
    # Only the listener that trusts the vendors reads their bundles.
    listener_context("device", pki, client_certificates=False)
    listener_context("secure", pki)


def test_the_start_stops_on_a_bundle_that_does_not_load(pki: Pki, tmp_path: Path) -> None:
    """Before any worker starts, which would otherwise end with a traceback."""
    pki.vendor_ca_dir.mkdir(exist_ok=True)
    (pki.vendor_ca_dir / "broken.pem").write_text("not a certificate\n")
    settings = load_settings(None, certs_dir=tmp_path / "certs", data_dir=tmp_path / "var")
    with pytest.raises(ConfigError, match=r"device listener: .*broken\.pem: no PEM certificate"):
        prepare(settings)


def test_a_reload_hands_new_connections_the_trust_of_the_files_now(
    pki: Pki, tmp_path: Path
) -> None:
    """The site's context stays; its connections are served by the newest one."""
    vendor = ensure_pki(load_settings(None, certs_dir=tmp_path / "vendor"))
    factory = _client(pki, vendor, tmp_path)
    contexts = ListenerContexts(pki, client_certificates=True)
    site = contexts.start("device")
    with pytest.raises(ssl.SSLError):
        _handshake(factory, site)

    pki.vendor_ca_dir.mkdir(exist_ok=True)
    (pki.vendor_ca_dir / "acme.pem").write_bytes(vendor.device_ca_cert.read_bytes())
    assert contexts.reload()
    assert contexts.sites["device"] is site
    assert _handshake(factory, site)
    assert _handshake(_client(pki, pki, tmp_path), site)  # the device CA's phones still

    (pki.vendor_ca_dir / "acme.pem").unlink()
    assert contexts.reload()
    with pytest.raises(ssl.SSLError):
        _handshake(factory, site)


def test_a_reload_that_does_not_load_changes_nothing(pki: Pki, tmp_path: Path) -> None:
    vendor = ensure_pki(load_settings(None, certs_dir=tmp_path / "vendor"))
    pki.vendor_ca_dir.mkdir(exist_ok=True)
    (pki.vendor_ca_dir / "acme.pem").write_bytes(vendor.device_ca_cert.read_bytes())
    contexts = ListenerContexts(pki, client_certificates=True)
    site = contexts.start("device")
    (pki.vendor_ca_dir / "acme.pem").unlink()
    (pki.vendor_ca_dir / "broken.pem").write_text("not a certificate\n")
    assert not contexts.reload()
    assert _handshake(_client(pki, vendor, tmp_path), site)  # the bundle read at start
