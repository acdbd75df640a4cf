"""The three listeners over real TLS, verified against the generated CA."""

import asyncio
import socket
import ssl
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from dls import handshakes
from dls.config import load_settings
from dls.pki import ensure_pki, issue_device_certificate
from tests.e2e.admin import eventually
from tests.e2e.server import ServerProcess

pytestmark = [pytest.mark.e2e, pytest.mark.db]


async def _get(url: str, context: ssl.SSLContext) -> tuple[int, dict[str, str], bytes]:
    async with aiohttp.ClientSession() as session, session.get(url, ssl=context) as response:
        return response.status, dict(response.headers), await response.read()


async def test_admin_listener_health_readiness_metrics(server: ServerProcess) -> None:
    context = server.ssl_context()
    status, headers, body = await _get(server.url("admin", "/healthz"), context)
    assert (status, body) == (200, b'{"status": "ok"}')
    assert len(headers["X-Request-ID"]) == 16
    status, _, body = await _get(server.url("admin", "/readyz"), context)
    assert status == 200 and b'"database": "ok"' in body
    status, headers, body = await _get(server.url("admin", "/metrics"), context)
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    assert b'dls_http_requests_total{listener="admin",method="GET",status="200"}' in body


async def test_device_listener_accepts_clients_without_certificate(server: ServerProcess) -> None:
    status, _, _ = await _get(server.url("device", "/healthz"), server.ssl_context())
    assert status == 200


def _device_credentials(server: ServerProcess, tmp_path: Path, ca: str) -> tuple[Path, Path]:
    settings = load_settings(None, certs_dir=server.certs)
    pki = ensure_pki(settings)
    if ca == "device":
        issued = issue_device_certificate(pki, "001a2b3c4d5e")
    else:  # a certificate from a CA the secure listener must not trust
        other = ensure_pki(load_settings(None, certs_dir=tmp_path / "foreign"))
        issued = issue_device_certificate(other, "001a2b3c4d5e")
    cert, key = tmp_path / f"{ca}.pem", tmp_path / f"{ca}.key"
    cert.write_bytes(issued.certificate_pem)
    key.write_bytes(issued.key_pem)
    return cert, key


async def test_secure_listener_requires_a_device_ca_certificate(
    server: ServerProcess, tmp_path: Path
) -> None:
    with pytest.raises((aiohttp.ClientError, ssl.SSLError, ConnectionError)):
        await _get(server.url("secure", "/healthz"), server.ssl_context())

    foreign = _device_credentials(server, tmp_path, "foreign")
    with pytest.raises((aiohttp.ClientError, ssl.SSLError, ConnectionError)):
        await _get(server.url("secure", "/healthz"), server.ssl_context(*foreign))

    own = _device_credentials(server, tmp_path, "device")
    status, _, _ = await _get(server.url("secure", "/healthz"), server.ssl_context(*own))
    assert status == 200
    # The optional listener takes the same certificate.
    status, _, _ = await _get(server.url("device", "/healthz"), server.ssl_context(*own))
    assert status == 200


async def test_a_factory_certificate_from_an_unknown_ca_fails_unless_the_request_is_off(
    server: ServerProcess, tmp_path: Path, database_url: str
) -> None:
    """A phone that presents a certificate whose CA dls does not hold (a vendor's factory
    certificate, say) cannot complete the handshake on the default device listener; with
    device_client_certificates off nothing is asked for and it gets through, to prove
    itself with Digest as any phone without a certificate does."""
    foreign = _device_credentials(server, tmp_path, "foreign")
    with pytest.raises((aiohttp.ClientError, ssl.SSLError, ConnectionError)):
        await _get(server.url("device", "/healthz"), server.ssl_context(*foreign))
    assert "client certificate optional, 0 vendor CA bundle(s)" in server.output()

    # The operator learns why from the log (the first time) and the metrics.
    async def output() -> str:
        return server.output()

    logged = await eventually(output, lambda text: "TLS handshake failed" in text)
    assert (
        "TLS handshake failed on the device listener: CERTIFICATE_VERIFY_FAILED (unable to "
        "get local issuer certificate): the client's certificate is from no CA this listener "
        "trusts (trusted here: the device CA and the bundles in certs/vendor-ca/; "
        "device_client_certificates = false asks phones for none)"
    ) in logged
    _, _, body = await _get(server.url("admin", "/metrics"), server.ssl_context())
    failures = {
        tuple(sample.labels.values()): sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
        if sample.name == "dls_tls_handshake_failures_total"
    }
    # aiohttp tries a request again on a new connection when the first one breaks.
    assert list(failures) == [("device", "CERTIFICATE_VERIFY_FAILED")]
    assert failures["device", "CERTIFICATE_VERIFY_FAILED"] >= 1

    (tmp_path / "relaxed").mkdir()
    relaxed = ServerProcess(
        tmp_path / "relaxed", database_url, env={"DLS_DEVICE_CLIENT_CERTIFICATES": "false"}
    )
    await relaxed.start()
    try:
        status, _, _ = await _get(relaxed.url("device", "/healthz"), relaxed.ssl_context(*foreign))
        assert status == 200
        assert "no client certificate asked for" in relaxed.output()
        # The secure listener still requires its own device CA.
        with pytest.raises((aiohttp.ClientError, ssl.SSLError, ConnectionError)):
            await _get(relaxed.url("secure", "/healthz"), relaxed.ssl_context(*foreign))
    finally:
        await relaxed.stop()


async def test_sigterm_finishes_cleanly(server: ServerProcess) -> None:
    assert await server.stop() == 0
    assert "stopped" in server.output()


async def test_access_lines_are_written_within_a_second_and_on_stop(
    server: ServerProcess,
) -> None:
    status, headers, _ = await _get(server.url("device", "/healthz?x=secret"), server.ssl_context())
    assert status == 200
    line = f"dls.access [{headers['X-Request-ID']}] GET /healthz 200 listener=device"
    for _ in range(30):  # the buffer is written a second after its first line
        if line in server.output():
            break
        await asyncio.sleep(0.1)
    assert line in server.output()
    assert "x=secret" not in server.output()  # no query strings

    status, headers, _ = await _get(server.url("admin", "/healthz"), server.ssl_context())
    assert await server.stop() == 0  # at once: the clean stop writes the buffer
    assert f"dls.access [{headers['X-Request-ID']}] GET /healthz 200 listener=admin" in (
        server.output()
    )


async def test_workers_share_the_phones_ports_and_the_admin_process_counts_them(
    tmp_path: Path, database_url: str
) -> None:
    process = ServerProcess(tmp_path, database_url, args=["--workers", "2"])
    await process.start()
    try:
        # Two workers and the admin process, named for ps, top and pgrep.
        names = sorted(_name(child) for child in process.children())
        assert names == ["dls-admin", "dls-worker-0", "dls-worker-1"]
        context = process.ssl_context()
        results = await asyncio.gather(
            *(_get(process.url("device", "/healthz"), context) for _ in range(20))
        )
        assert {status for status, _, _ in results} == {200}

        async def metrics() -> dict[tuple[str, str, str], float]:
            status, _, body = await _get(process.url("admin", "/metrics"), context)
            assert status == 200
            return {
                (sample.name, sample.labels["listener"], sample.labels.get("status", "")): (
                    sample.value
                )
                for family in text_string_to_metric_families(body.decode())
                for sample in family.samples
                if sample.name in ("dls_http_requests_total", "dls_tls_handshakes_total")
                and sample.labels.get("stage", "completed") == "completed"
            }

        # Multiprocess metrics: the admin process reports what the workers answered, and
        # the workers' handshakes (counted every few seconds).
        counted = await eventually(
            metrics,
            lambda found: found.get(("dls_tls_handshakes_total", "device", ""), 0) >= 20,
            within=handshakes.SAMPLE_INTERVAL_S * 3,
        )
        assert counted[("dls_http_requests_total", "device", "200")] == 20
    finally:
        assert await process.stop() == 0


async def test_one_process_serves_all_three_listeners(tmp_path: Path, database_url: str) -> None:
    process = ServerProcess(tmp_path, database_url, args=["--no-admin-process"])
    await process.start()
    try:
        assert process.children() == []
        context = process.ssl_context()
        for listener in ("device", "admin"):
            assert (await _get(process.url(listener, "/healthz"), context))[0] == 200
    finally:
        assert await process.stop() == 0


async def test_a_port_that_is_taken_stops_the_server_instead_of_restarting_it(
    tmp_path: Path, database_url: str
) -> None:
    """The admin process cannot listen: the server says so and exits 1, where it used to
    start that process again every second, for ever."""
    process = ServerProcess(tmp_path, database_url)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", process.admin_port))
        taken.listen()
        with pytest.raises(RuntimeError, match="server exited 1"):
            await process.start()
    output = process.output()
    assert "exited before serving; stopping" in output and "process=dls-admin" in output
    assert output.count("exited before serving") == 1 and "restarting" not in output
    # Why, in one line and without a traceback.
    assert (
        f"cannot listen: Address already in use listener=admin "
        f"address=127.0.0.1:{process.admin_port}"
    ) in output
    assert "Traceback" not in output


def _name(pid: int) -> str:
    """What ps -o comm shows for the process."""
    return Path(f"/proc/{pid}/comm").read_text().strip()
