"""Renewed certificates and changed vendor CA bundles are taken up on SIGHUP, without a
restart.

What an operator meets: an ACME client writes a new chain over ``server_cert_file`` (or
the generated ``certs/server.pem`` is moved away) and runs ``kill -HUP``; new
connections then get the new certificate, open ones keep working, no process restarts,
and a renewal that went wrong leaves the old certificate serving. A vendor CA bundle
added to ``certs/vendor-ca/`` is trusted after the signal, and one taken away no more.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import signal
import ssl
from pathlib import Path

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from prometheus_client.parser import text_string_to_metric_families

from dls.config import load_settings
from dls.pki import ensure_pki, issue_device_certificate
from tests.e2e.admin import eventually
from tests.e2e.server import ServerProcess

pytestmark = [pytest.mark.e2e, pytest.mark.db]


async def _presented(process: ServerProcess, listener: str, context: ssl.SSLContext) -> bytes:
    """The certificate a new connection to ``listener`` is shown (DER), verified."""
    port = {"device": process.device_port, "admin": process.admin_port}[listener]
    _, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=context, server_hostname="localhost"
    )
    try:
        return writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    finally:
        writer.close()


def _hang_up(process: ServerProcess) -> None:
    assert process.process is not None
    process.process.send_signal(signal.SIGHUP)


async def _expiry_metric(process: ServerProcess) -> dict[str, float]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(process.url("admin", "/metrics"), ssl=process.ssl_context()) as response,
    ):
        text = await response.text()
    return {
        sample.labels["certificate"]: sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "dls_server_certificate_expiry_timestamp_seconds"
        for sample in family.samples
    }


async def test_a_renewed_generated_certificate_is_served_after_sighup(
    tmp_path: Path, database_url: str
) -> None:
    process = ServerProcess(tmp_path, database_url)
    await process.start()
    try:
        context = process.ssl_context()
        before = await _presented(process, "device", context)
        workers = process.children()
        async with aiohttp.ClientSession() as kept:  # a connection open across the reload
            url = process.url("device", "/healthz")
            assert (await kept.get(url, ssl=context)).status == 200

            # Renewal as the README says: move the pair away and signal the server.
            for name in ("server.pem", "server.key"):
                (process.certs / name).rename(tmp_path / f"old-{name}")
            _hang_up(process)

            async def both() -> tuple[bytes, bytes]:
                return (
                    await _presented(process, "device", context),
                    await _presented(process, "admin", context),
                )

            device, admin = await eventually(both, lambda seen: before not in seen)
            assert (await kept.get(url, ssl=context)).status == 200
        renewed = x509.load_pem_x509_certificate((process.certs / "server.pem").read_bytes())
        assert device == admin == renewed.public_bytes(serialization.Encoding.DER)
        assert process.children() == workers  # nothing restarted
        expiry = await eventually(lambda: _expiry_metric(process), lambda m: bool(m))
        assert expiry == {"server.pem": renewed.not_valid_after_utc.timestamp()}
        assert "certificates reloaded listeners=" in process.output()
    finally:
        assert await process.stop() == 0


def _issued(certs: Path, common_name: str, days: int) -> tuple[bytes, bytes]:
    """A chain and key from the server's own root CA, as an operator's CA would issue it."""
    ca = x509.load_pem_x509_certificate((certs / "ca.pem").read_bytes())
    ca_key = serialization.load_pem_private_key((certs / "ca.key").read_bytes(), None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return (
        certificate.public_bytes(serialization.Encoding.PEM),
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )


async def test_an_operators_chain_is_checked_before_it_replaces_the_served_one(
    tmp_path: Path, database_url: str
) -> None:
    """One process (``--no-admin-process``): it handles the signal itself."""
    # The root CA first, so the chains can come from it and the client trusts them.
    ensure_pki(load_settings(certs_dir=tmp_path / "certs", data_dir=tmp_path / "var"))
    first, second = (
        _issued(tmp_path / "certs", "first", 30),
        _issued(tmp_path / "certs", "second", 60),
    )
    chain, key = tmp_path / "chain.pem", tmp_path / "chain.key"
    chain.write_bytes(first[0])
    key.write_bytes(first[1])
    process = ServerProcess(
        tmp_path,
        database_url,
        env={"DLS_SERVER_CERT_FILE": str(chain), "DLS_SERVER_KEY_FILE": str(key)},
        args=["--no-admin-process"],
    )
    await process.start()
    try:
        context = process.ssl_context()

        async def shown() -> str:
            der = await _presented(process, "device", context)
            subject = x509.load_der_x509_certificate(der).subject
            return str(subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)

        assert await shown() == "first"
        # Half a renewal: the new chain is there, its key is not yet.
        chain.write_bytes(second[0])
        _hang_up(process)
        await eventually(
            lambda: asyncio.sleep(0, process.output()),
            lambda output: "the key is not the certificate's" in output,
        )
        assert await shown() == "first"
        key.write_bytes(second[1])
        _hang_up(process)
        await eventually(shown, lambda name: name == "second")
        assert process.process is not None and process.process.returncode is None
    finally:
        assert await process.stop() == 0


async def _handshakes_completed(process: ServerProcess, listener: str) -> float:
    async with (
        aiohttp.ClientSession() as session,
        session.get(process.url("admin", "/metrics"), ssl=process.ssl_context()) as response,
    ):
        text = await response.text()
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "dls_tls_handshakes_total"
        and sample.labels == {"listener": listener, "stage": "completed"}
    )


async def test_a_vendor_ca_bundle_is_trusted_from_sighup_on_and_distrusted_when_removed(
    tmp_path: Path, database_url: str
) -> None:
    """Onboarding phones with factory certificates: their vendor's CA goes into
    ``certs/vendor-ca/`` and the server is signalled; taken away, it is trusted no more."""
    process = ServerProcess(tmp_path, database_url)
    await process.start()
    try:
        vendor = ensure_pki(load_settings(None, certs_dir=tmp_path / "vendor"))
        issued = issue_device_certificate(vendor, "001a2b3c4d5e")
        (tmp_path / "factory.pem").write_bytes(issued.certificate_pem)
        (tmp_path / "factory.key").write_bytes(issued.key_pem)
        factory = process.ssl_context(tmp_path / "factory.pem", tmp_path / "factory.key")
        url = process.url("device", "/healthz")

        async def status() -> int | str:
            """The device listener's answer to a phone with the factory certificate, on a
            new connection; or what ended the connection."""
            try:
                async with (
                    aiohttp.ClientSession() as session,
                    session.get(url, ssl=factory) as response,
                ):
                    return response.status
            except (aiohttp.ClientError, ssl.SSLError, ConnectionError) as exc:
                return type(exc).__name__

        assert await status() != 200
        bundles = process.certs / "vendor-ca"
        bundles.mkdir(exist_ok=True)
        (bundles / "acme.pem").write_bytes(vendor.device_ca_cert.read_bytes())
        _hang_up(process)
        await eventually(status, lambda answer: answer == 200)
        for _ in range(3):
            assert await status() == 200
        # Handshakes are counted on the contexts that serve them, the new ones included.
        await eventually(
            lambda: _handshakes_completed(process, "device"), lambda done: done >= 4, within=15
        )
        assert "vendor_ca_bundles=1" in process.output()

        # A bundle that does not load changes nothing, and the log names it.
        (bundles / "broken.pem").write_text("not a certificate\n")
        _hang_up(process)
        await eventually(
            lambda: asyncio.sleep(0, process.output()),
            lambda output: "no PEM certificate in the file" in output,
        )
        assert f"files={bundles / 'broken.pem'}" in process.output()
        assert await status() == 200

        (bundles / "broken.pem").unlink()
        (bundles / "acme.pem").unlink()
        _hang_up(process)
        await eventually(status, lambda answer: answer != 200)
        assert process.process is not None and process.process.returncode is None
    finally:
        assert await process.stop() == 0


def _worker_pid(process: ServerProcess) -> int | None:
    for pid in process.children():
        with contextlib.suppress(OSError):
            if Path(f"/proc/{pid}/comm").read_text().strip() == "dls-worker-0":
                return pid
    return None


async def test_a_worker_restarting_is_not_ended_by_sighup_and_serves_the_renewal(
    tmp_path: Path, database_url: str
) -> None:
    """A worker restarted after a crash gets no SIGHUP before it can handle one (it used
    to end it, and it was restarted again), and one held back from it while it started
    is caught up on: it serves the certificate renewed meanwhile."""
    process = ServerProcess(tmp_path, database_url)
    await process.start()
    try:
        context = process.ssl_context()
        before = await _presented(process, "device", context)
        crashed = _worker_pid(process)
        assert crashed is not None
        os.kill(crashed, signal.SIGKILL)
        for name in ("server.pem", "server.key"):
            (process.certs / name).rename(tmp_path / f"old-{name}")
        # An operator (or a deploy hook run twice) signalling throughout the restart.
        for _ in range(80):
            _hang_up(process)
            await asyncio.sleep(0.05)
        restarted = await eventually(
            lambda: asyncio.sleep(0, _worker_pid(process)),
            lambda pid: pid not in (None, crashed),
        )
        renewed = x509.load_pem_x509_certificate((process.certs / "server.pem").read_bytes())

        async def presented() -> bytes | None:
            try:
                return await _presented(process, "device", context)
            except ConnectionError:  # not listening yet
                return None

        served = await eventually(presented, lambda der: der not in (None, before), within=15)
        assert served == renewed.public_bytes(serialization.Encoding.DER)
        assert process.output().count("exited; restarting") == 1
        assert _worker_pid(process) == restarted
    finally:
        assert await process.stop() == 0
