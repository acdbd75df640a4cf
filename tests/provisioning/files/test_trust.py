"""Who is asking: the trust decision for one request, and what it notes for the admin."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import make_mocked_request
from cryptography import x509

from dls.config import load_settings
from dls.devices.client_certificates import fingerprint
from dls.devices.facts import DeviceFacts
from dls.devices.models import DeviceStatus, RefusalReason
from dls.devices.registry import digest_purpose
from dls.pki import ensure_pki, issue_device_certificate
from dls.provisioning.files import trust
from dls.provisioning.files.detect import Detection
from dls.provisioning.files.digest import DigestVerifier
from dls.provisioning.files.outcomes import Outcome
from dls.provisioning.files.trust import DeviceTrust
from dls.provisioning.ledger import Refused, Sighting
from dls.secretbox import SecretBox
from dls.tenancy.models import WpiSecureMode

MAC = "001565aabbcc"
PATH = f"/prov/{MAC}.cfg"
PASSWORD = "the-device-password"
BOX = SecretBox(b"k" * 32)


def _facts(*, password: str | None = PASSWORD, status: DeviceStatus = DeviceStatus.ACTIVE) -> Any:
    return DeviceFacts(
        id=7,
        mac=MAC,
        vendor="yealink",
        model="T46U",
        status=status,
        tenant_id="100000000001",
        group_id=None,
        user_id=None,
        digest_password=BOX.encrypt(password, digest_purpose(7)) if password else None,
        client_certificate_sha256=None,
        legacy_mac_only=False,
        wpi_secure_mode=WpiSecureMode.OFF,
        pinned_version=None,
        firmware_managed=False,
        revision="r1",
    )


DETECTION = Detection("yealink", "T46U", None, "108.86.0.90", None, None, MAC, None, ())


def _authorization(password: str, nonce: str, uri: str = PATH) -> str:
    def h(text: str) -> str:
        return hashlib.md5(text.encode()).hexdigest()  # noqa: S324 - Digest's own hash

    response = h(f"{h(f'{MAC}:dls:{password}')}:{nonce}:00000001:c0ffee:auth:{h(f'GET:{uri}')}")
    return (
        f'Digest username="{MAC}", realm="dls", nonce="{nonce}", uri="{uri}", '
        f'algorithm=MD5, qop=auth, nc=00000001, cnonce="c0ffee", response="{response}"'
    )


class Notes:
    """What the trust check hands the ledger."""

    def __init__(self) -> None:
        self.refusals: list[Refused] = []
        self.sightings: list[Sighting] = []

    def refused(self, refused: Refused) -> None:
        self.refusals.append(refused)

    def sighted(self, sighting: Sighting) -> None:
        self.sightings.append(sighting)


class Asked:
    def __init__(self, device_ca: x509.Name | None = None) -> None:
        self.notes = Notes()
        ca = device_ca or x509.Name([])
        self.trust = DeviceTrust(BOX, self.notes, ca)  # type: ignore[arg-type]
        self.nonce = DigestVerifier(BOX.derive("digest-nonce")).nonce()

    def check(self, facts: DeviceFacts | None, authorization: str | None) -> Any:
        headers = {"User-Agent": "Yealink SIP-T46U 108.86.0.90"}
        if authorization:
            headers["Authorization"] = authorization
        request = make_mocked_request("GET", PATH, headers=headers)
        return self.trust.check(request, DETECTION, facts)

    def refused(self) -> list[tuple[int, RefusalReason]]:
        return [(r.device_id, r.reason) for r in self.notes.refusals]


async def test_the_devices_password_proves_it_and_nothing_is_noted() -> None:
    asked = Asked()
    assert asked.check(_facts(), _authorization(PASSWORD, asked.nonce)) is None
    assert asked.refused() == []


@pytest.mark.parametrize(
    ("facts", "password", "uri", "reason"),
    [
        (_facts(), "not-the-password", PATH, RefusalReason.WRONG_PASSWORD),
        (_facts(), PASSWORD, f"/prov/{MAC}-other.cfg", RefusalReason.WRONG_URI),
        (_facts(password=None), "any-guess", PATH, RefusalReason.NO_PASSWORD),
    ],
)
async def test_a_refusal_is_a_404_and_noted_with_its_reason(
    facts: DeviceFacts, password: str, uri: str, reason: RefusalReason
) -> None:
    asked = Asked()
    refusal = asked.check(facts, _authorization(password, asked.nonce, uri))
    assert (refusal.outcome, refusal.response.status) == (Outcome.REFUSED, 404)
    assert refusal.response.body == trust.NOT_FOUND_BODY
    assert asked.refused() == [(7, reason)]


async def test_the_timing_password_proves_no_device_without_a_password_of_its_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The hash a request for a device without a Digest password is checked against, for
    equal timing, was of a password written in the source: whoever read it got such a
    device's file, SIP password included."""
    monkeypatch.setattr(trust, "_DUMMY_PASSWORD", "known-to-everyone")
    asked = Asked()
    refusal = asked.check(_facts(password=None), _authorization("known-to-everyone", asked.nonce))
    assert (refusal.outcome, refusal.response.status) == (Outcome.REFUSED, 404)
    assert asked.refused() == [(7, RefusalReason.NO_PASSWORD)]


@pytest.mark.parametrize("known", [True, False])
async def test_a_nonce_of_another_key_gets_a_new_challenge(known: bool) -> None:
    """After ``dls secrets rotate-key`` a phone that kept its nonce authenticates again,
    known MAC or not, rather than meeting a 404."""
    asked = Asked()
    foreign = DigestVerifier(b"o" * 32).nonce()
    refusal = asked.check(_facts() if known else None, _authorization(PASSWORD, foreign))
    assert (refusal.outcome, refusal.response.status) == (Outcome.CHALLENGED, 401)
    challenges = refusal.response.headers.getall("WWW-Authenticate")
    assert challenges and not any("stale=true" in c for c in challenges)
    assert asked.refused() == []


async def test_an_unknown_or_retired_device_is_a_sighting_not_a_refusal() -> None:
    asked = Asked()
    for facts in (None, _facts(status=DeviceStatus.RETIRED)):
        refusal = asked.check(facts, _authorization(PASSWORD, asked.nonce))
        assert (refusal.outcome, refusal.response.status) == (Outcome.UNKNOWN, 404)
    assert asked.refused() == []
    assert [sighting.mac for sighting in asked.notes.sightings] == [MAC, MAC]


async def test_a_certificate_that_is_not_the_devices_is_noted_where_the_phone_stops(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A phone whose certificate was replaced or revoked, and which has no Digest password
    to answer the challenge with, stops at the 401: the refusal is noted there. With
    Digest credentials, what the Digest check found is noted instead."""
    pki = ensure_pki(load_settings(None, certs_dir=tmp_path / "certs", data_dir=tmp_path))
    certificate = x509.load_pem_x509_certificate(issue_device_certificate(pki, MAC).certificate_pem)
    monkeypatch.setattr(trust, "client_certificate", lambda request: certificate)
    asked = Asked(certificate.issuer)
    current = _facts(password=None)._replace(client_certificate_sha256=fingerprint(certificate))
    assert asked.check(current, None) is None
    assert asked.refused() == []

    replaced = _facts()._replace(client_certificate_sha256="0" * 64)
    refusal = asked.check(replaced, None)
    assert (refusal.outcome, refusal.response.status) == (Outcome.CHALLENGED, 401)
    assert asked.refused() == [(7, RefusalReason.WRONG_CERTIFICATE)]
    refusal = asked.check(replaced, _authorization("not-the-password", asked.nonce))
    assert (refusal.outcome, refusal.response.status) == (Outcome.REFUSED, 404)
    assert asked.refused()[-1] == (7, RefusalReason.WRONG_PASSWORD)
