import datetime as dt
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from dls.cli import main
from dls.cli.certs import days_left
from dls.config import ConfigError, KeyType, Settings
from dls.pki import describe, ensure_pki, fingerprint, issue_device_certificate


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_first_start_creates_ca_server_and_device_ca(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(hostnames=["dls.example.net", "10.0.0.5"])
    pki = ensure_pki(settings)
    for key in (pki.ca_key, pki.device_ca_key, pki.server_chains[0][1]):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
    server = _cert(pki.server_chains[0][0])
    sans = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(sans.get_values_for_type(x509.DNSName)) == {"dls.example.net", "localhost"}
    assert {str(ip) for ip in sans.get_values_for_type(x509.IPAddress)} == {"10.0.0.5", "127.0.0.1"}
    assert isinstance(server.public_key(), ec.EllipticCurvePublicKey)
    assert server.issuer == _cert(pki.ca_cert).subject
    server.verify_directly_issued_by(_cert(pki.ca_cert))
    assert _cert(pki.device_ca_cert).subject != _cert(pki.ca_cert).subject


def test_existing_files_are_never_overwritten(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    pki = ensure_pki(settings)
    before = {p: p.read_bytes() for p in settings.certs_dir.iterdir() if p.is_file()}
    again = ensure_pki(make_settings(hostnames=["other.example"]))
    assert again == pki
    assert {p: p.read_bytes() for p in settings.certs_dir.iterdir() if p.is_file()} == before


def test_rsa_and_both(make_settings: Callable[..., Settings]) -> None:
    pki = ensure_pki(make_settings(server_key_type=KeyType.BOTH))
    kinds = [type(_cert(chain).public_key()) for chain, _ in pki.server_chains]
    assert issubclass(kinds[0], ec.EllipticCurvePublicKey)
    assert issubclass(kinds[1], rsa.RSAPublicKey)


def test_operator_supplied_chain_is_used_as_is(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    own = ensure_pki(make_settings(certs_dir=tmp_path / "own"))
    chain, key = own.server_chains[0]
    pki = ensure_pki(make_settings(server_cert_file=chain, server_key_file=key))
    assert pki.server_chains == ((chain, key),)
    assert not (tmp_path / "certs" / "server.pem").exists()
    with pytest.raises(ValueError, match="together"):
        ensure_pki(make_settings(server_cert_file=chain))


def test_device_certificate_carries_the_mac(make_settings: Callable[..., Settings]) -> None:
    pki = ensure_pki(make_settings())
    issued = issue_device_certificate(pki, "001a2b3c4d5e")
    cert = x509.load_pem_x509_certificate(issued.certificate_pem)
    cert.verify_directly_issued_by(_cert(pki.device_ca_cert))
    assert cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value == "001a2b3c4d5e"
    assert b"PRIVATE KEY" in issued.key_pem


def test_certs_show_prints_fingerprints(
    make_settings: Callable[..., Settings],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = make_settings()
    monkeypatch.setenv("DLS_CERTS_DIR", str(settings.certs_dir))
    assert main(["certs", "show"]) == 0
    out = capsys.readouterr().out
    pki = ensure_pki(settings)
    assert fingerprint(pki.ca_cert) in out
    assert "SANs     localhost, 127.0.0.1" in out
    # The generated server certificate lasts 825 days; the renewal is planned by them.
    assert "(in 824 days)" in out or "(in 825 days)" in out
    assert [i.path for i in describe([pki.ca_cert])] == [pki.ca_cert]


def test_an_expiry_is_shown_in_days_left() -> None:
    now = dt.datetime(2026, 11, 27, 12, tzinfo=dt.UTC)
    assert days_left(now + dt.timedelta(days=13, hours=23), now) == "in 13 days"
    assert days_left(now + dt.timedelta(hours=1), now) == "in 0 days"
    assert days_left(now - dt.timedelta(seconds=1), now) == "EXPIRED"


def test_certs_show_lists_each_ca_of_a_bundle_and_names_a_file_it_cannot_read(
    make_settings: Callable[..., Settings],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    """A vendor bundle holds several CAs, each trusted; a file with none used to end the
    command in a traceback before anything after it was shown."""
    settings = make_settings()
    monkeypatch.setenv("DLS_CERTS_DIR", str(settings.certs_dir))
    pki = ensure_pki(settings)
    other = ensure_pki(make_settings(certs_dir=tmp_path / "other"))
    pki.vendor_ca_dir.mkdir(exist_ok=True)
    (pki.vendor_ca_dir / "a-broken.pem").write_text("not a certificate\n")
    bundle = pki.vendor_ca_dir / "b-acme.pem"
    bundle.write_bytes(other.ca_cert.read_bytes() + other.device_ca_cert.read_bytes())
    assert main(["certs", "show"]) == 1
    out = capsys.readouterr().out
    broken = pki.vendor_ca_dir / "a-broken.pem"
    assert f"{broken}\n  unreadable  no PEM certificate in the file" in out
    assert f"{bundle}  (1 of 2)" in out and f"{bundle}  (2 of 2)" in out
    assert fingerprint(other.device_ca_cert) in out


def test_a_certificate_file_that_cannot_be_used_is_named_not_a_traceback(
    make_settings: Callable[..., Settings],
) -> None:
    """What start-up (and SIGHUP) meets when the certs directory was half restored."""
    settings = make_settings()
    pki = ensure_pki(settings)
    certs = settings.certs_dir
    (certs / "server.pem").unlink()
    (certs / "server.key").rename(certs / "server.key.kept")
    pki.ca_key.rename(certs / "ca.key.kept")
    with pytest.raises(ConfigError, match=r"ca\.key: No such file or directory, needed to issue"):
        ensure_pki(settings)
    (certs / "ca.key.kept").rename(pki.ca_key)
    root = pki.ca_cert.read_bytes()
    pki.ca_cert.write_text("damaged\n")
    with pytest.raises(ConfigError, match=r"ca\.pem: not a PEM file of the kind expected"):
        ensure_pki(settings)
    pki.ca_cert.write_bytes(root)
    (certs / "server.key.kept").rename(certs / "server.key")
    with pytest.raises(ConfigError, match=r"server\.key exists without its certificate"):
        ensure_pki(settings)
