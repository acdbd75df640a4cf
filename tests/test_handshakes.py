"""Handshakes that never became a request are counted, and failed ones logged with their
reason, since nothing else shows them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from dls import handshakes
from dls.config import load_settings
from dls.handshakes import HandshakeCounts, report_failures
from dls.pki import ensure_pki, issue_device_certificate
from dls.tls import admin_context, device_context, secure_context


def _count(stage: str) -> float:
    labels = {"listener": "admin", "stage": stage}
    return REGISTRY.get_sample_value("dls_tls_handshakes_total", labels) or 0.0


async def test_a_failed_handshake_is_started_and_never_completed(tmp_path: Path) -> None:
    pki = ensure_pki(load_settings(None, certs_dir=tmp_path / "certs", data_dir=tmp_path))
    server_context = admin_context(pki)
    counts = HandshakeCounts({"admin": server_context})

    async def answer(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=server_context)
    port = server.sockets[0].getsockname()[1]
    trusting = ssl.create_default_context(cafile=str(pki.ca_cert))
    stranger = ssl.create_default_context()  # a phone without our CA
    before = {stage: _count(stage) for stage in ("started", "completed")}
    async with server:
        for client in (trusting, trusting, stranger):
            try:
                _, writer = await asyncio.open_connection(
                    "127.0.0.1", port, ssl=client, server_hostname="localhost"
                )
            except ssl.SSLCertVerificationError:
                assert client is stranger
                continue
            writer.close()
        await asyncio.sleep(0.1)  # the server has read the stranger's alert
        await counts.stop()  # samples a last time
    grown = {stage: _count(stage) - before[stage] for stage in before}
    assert grown == {"started": 3, "completed": 2}
    counts.sample()  # nothing new: nothing counted twice
    assert {stage: _count(stage) - before[stage] for stage in before} == grown


async def test_counts_follow_on_their_own(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    interval = 0.05
    monkeypatch.setattr(handshakes, "SAMPLE_INTERVAL_S", interval)
    pki = ensure_pki(load_settings(None, certs_dir=tmp_path / "certs", data_dir=tmp_path))
    server_context = admin_context(pki)
    counts = HandshakeCounts({"admin": server_context})
    await counts.start()
    server = await asyncio.start_server(lambda _r, w: w.close(), "127.0.0.1", 0, ssl=server_context)
    before = _count("completed")
    async with server:
        port = server.sockets[0].getsockname()[1]
        trusting = ssl.create_default_context(cafile=str(pki.ca_cert))
        _, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=trusting, server_hostname="localhost"
        )
        writer.close()
        await asyncio.sleep(interval * 4)
        assert _count("completed") - before == 1
    await counts.stop()


def _failures(listener: str, reason: str) -> float:
    labels = {"listener": listener, "reason": reason}
    return REGISTRY.get_sample_value("dls_tls_handshake_failures_total", labels) or 0.0


def _attempt(port: int, client: ssl.SSLContext | None, first: bytes = b"") -> None:
    """A blocking client, as a phone's TLS library is: it sends its alert when it gives
    up (asyncio's client closes without one)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        if client is None:
            raw.sendall(first)
            raw.recv(1024)
            return
        with (
            contextlib.suppress(ssl.SSLError, OSError),
            client.wrap_socket(raw, server_hostname="localhost") as tls,
        ):
            tls.sendall(b"GET / HTTP/1.0\r\n\r\n")
            tls.recv(1024)


async def test_failed_handshakes_are_counted_and_logged_by_reason(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An operator whose phones cannot connect learns why, per listener, once."""
    pki = ensure_pki(load_settings(None, certs_dir=tmp_path / "certs", data_dir=tmp_path))
    contexts = {"device": device_context(pki), "secure": secure_context(pki)}
    report_failures(contexts)
    servers = {
        name: await asyncio.start_server(lambda _r, w: w.close(), "127.0.0.1", 0, ssl=context)
        for name, context in contexts.items()
    }
    ports = {name: server.sockets[0].getsockname()[1] for name, server in servers.items()}
    foreign = ensure_pki(load_settings(None, certs_dir=tmp_path / "foreign"))
    issued = issue_device_certificate(foreign, "001a2b3c4d5e")
    (tmp_path / "phone.pem").write_bytes(issued.certificate_pem)
    (tmp_path / "phone.key").write_bytes(issued.key_pem)
    factory = ssl.create_default_context(cafile=str(pki.ca_cert))
    factory.load_cert_chain(tmp_path / "phone.pem", tmp_path / "phone.key")
    trusting = ssl.create_default_context(cafile=str(pki.ca_cert))
    stranger = ssl.create_default_context(cafile=str(foreign.ca_cert))
    attempts = [
        ("device", factory, b"", "CERTIFICATE_VERIFY_FAILED"),
        ("device", factory, b"", "CERTIFICATE_VERIFY_FAILED"),
        ("device", stranger, b"", "TLSV1_ALERT_UNKNOWN_CA"),
        ("device", None, b"GET /prov/x.cfg HTTP/1.1\r\n\r\n", "HTTP_REQUEST"),
        ("secure", trusting, b"", "PEER_DID_NOT_RETURN_A_CERTIFICATE"),
        ("secure", factory, b"", "CERTIFICATE_VERIFY_FAILED"),
    ]
    before = {(name, reason): _failures(name, reason) for name, _, _, reason in attempts}
    caplog.set_level(logging.DEBUG, logger="dls.tls")
    try:
        for name, client, first, _ in attempts:
            await asyncio.to_thread(_attempt, ports[name], client, first)
        # A phone that trusts the server and needs no certificate: nothing to report.
        await asyncio.to_thread(_attempt, ports["device"], trusting)
        await asyncio.sleep(0.1)  # the server has read the last alert
    finally:
        for server in servers.values():
            server.close()
            await server.wait_closed()
    grown = {key: _failures(*key) - count for key, count in before.items()}
    assert grown == {
        ("device", "CERTIFICATE_VERIFY_FAILED"): 2,
        ("device", "TLSV1_ALERT_UNKNOWN_CA"): 1,
        ("device", "HTTP_REQUEST"): 1,
        ("secure", "PEER_DID_NOT_RETURN_A_CERTIFICATE"): 1,
        ("secure", "CERTIFICATE_VERIFY_FAILED"): 1,
    }
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warned == [
        "TLS handshake failed on the device listener: CERTIFICATE_VERIFY_FAILED (unable to "
        "get local issuer certificate): the client's certificate is from no CA this listener "
        "trusts (trusted here: the device CA and the bundles in certs/vendor-ca/; "
        "device_client_certificates = false asks phones for none)",
        "TLS handshake failed on the device listener: TLSV1_ALERT_UNKNOWN_CA: the client "
        "does not trust this server's certificate: give it certs/ca.pem, or serve a "
        "certificate from a CA it trusts",
        "TLS handshake failed on the device listener: HTTP_REQUEST: plain HTTP sent to this "
        "HTTPS port: the client's URL says http://",
        "TLS handshake failed on the secure listener: PEER_DID_NOT_RETURN_A_CERTIFICATE: the "
        "client sent no certificate; this listener requires one from the device CA",
        "TLS handshake failed on the secure listener: CERTIFICATE_VERIFY_FAILED (unable to "
        "get local issuer certificate): the client's certificate is from no CA this listener "
        "trusts (trusted here: the device CA only)",
    ]
    # The second factory certificate on the device listener: the same reason, at debug.
    assert len([r for r in caplog.records if r.levelno == logging.DEBUG]) == 1


def _odd_reason() -> ssl.SSLError:
    error = ssl.SSLError(1, "odd")
    error.reason = "not a mnemonic\n"  # type: ignore[attr-defined]
    return error


@pytest.mark.parametrize(
    "error", [ssl.SSLError(1, "none given"), ssl.SSLEOFError(8, "EOF occurred"), _odd_reason()]
)
def test_a_failure_without_a_plain_reason_is_one_label(
    error: ssl.SSLError, caplog: pytest.LogCaptureFixture
) -> None:
    """The reason is a metric label and a log line: only OpenSSL's mnemonics pass."""
    before = _failures("admin", "OTHER")
    caplog.set_level(logging.DEBUG, logger="dls.tls")
    handshakes._report("admin", error)
    assert _failures("admin", "OTHER") - before == 1
    assert caplog.records[-1].getMessage() == "TLS handshake failed on the admin listener: OTHER"
