"""Serving configuration files to 3rd-party phones and ATAs under ``/prov/``.

One request, top to bottom (DESIGN.md's data flow): detect the device from path and
User-Agent -> identify it by MAC (one indexed query) and decide trust (client certificate,
HTTP Digest, or the tenant's legacy MAC-only mode) -> resolve its settings and, for the
files that carry the firmware URL, the firmware offer (``dls.firmware.delivery``) ->
render, or take the rendering cached for this revision and offer -> record the fetch in the
ledger buffer (no database write here). Anything untrusted gets nothing secret: an unknown
MAC and a wrong password get the same 404.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import logging
import re
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web
from cryptography import x509
from sqlalchemy import select

from dls.db.types import utcnow
from dls.devices.client_certificates import fingerprint
from dls.devices.effective import SYSTEM_KEY, resolve_documents, settings_sources
from dls.devices.facts import DeviceFacts, device_facts
from dls.devices.inheritance import Level, ResolutionError, SettingsLayer, resolve
from dls.devices.layers import decode_layer, purpose
from dls.devices.models import DeviceStatus, Scope, SettingsDocument
from dls.devices.registry import digest_purpose
from dls.devices.settings import DeviceSettings, FirmwareTarget
from dls.firmware.runtime import FirmwareRuntime, Offer
from dls.provisioning.files.detect import Detection, Detector, Rejection
from dls.provisioning.files.digest import DigestVerifier, ha1, parse_authorization
from dls.provisioning.files.profiles import (
    FileRole,
    FileScope,
    FileSpec,
    FirmwareLocation,
    FormatFamily,
    ModelSpec,
    ProfileSet,
    VendorProfile,
)
from dls.provisioning.files.render import RenderError, RenderRequest, render
from dls.provisioning.ledger import Fetch, Ledger, Sighting
from dls.secretbox import SecretBox, SecretError
from dls.services import Services
from dls.tls import client_certificate

__all__ = ["PROVISIONING_PREFIX", "FileProvisioner", "RenderCache"]

log = logging.getLogger(__name__)

PROVISIONING_PREFIX = "/prov/"
HA1_CACHE_ENTRIES = 100_000  # per worker: one per device that authenticates with Digest
UPLOAD_LIMIT = 1024 * 1024  # bytes per uploaded file (Poly logs, overrides)
NOT_FOUND_BODY = b"not found\n"
# A marker URL rendered once per (vendor, model, file) to learn which files carry it.
_PROBE_HOST = b"firmware-probe.invalid"
_PROBE_URL = "https://firmware-probe.invalid/fw/probe/"
_PROBE_MAC = "000000000001"
_DUMMY_PASSWORD = "dls-dummy-password-for-equal-timing"  # noqa: S105 - never matches

_CONTENT_TYPES = {FormatFamily.KEY_VALUE: "text/plain"}
_MAC_IN_TEXT = re.compile(
    r"(?<![0-9A-Fa-f])(?:[0-9A-Fa-f]{2}[:-]?){5}[0-9A-Fa-f]{2}(?![0-9A-Fa-f])"
)


@dataclass(frozen=True, slots=True)
class Rendered:
    body: bytes
    etag: str
    revision: str  # the configuration revision it was rendered from ("" for common files)


class RenderCache:
    """Rendered files by (device, file, revision): LRU, bounded."""

    def __init__(self, max_entries: int) -> None:
        self._entries: OrderedDict[tuple[object, ...], Rendered] = OrderedDict()
        self._max = max_entries

    def get(self, key: tuple[object, ...]) -> Rendered | None:
        found = self._entries.get(key)
        if found is not None:
            self._entries.move_to_end(key)
        return found

    def put(self, key: tuple[object, ...], body: bytes, revision: str = "") -> Rendered:
        rendered = Rendered(body, '"' + hashlib.sha256(body).hexdigest()[:32] + '"', revision)
        self._entries[key] = rendered
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)
        return rendered


class FileProvisioner:
    def __init__(self, services: Services, ledger: Ledger) -> None:
        self._services = services
        self._ledger = ledger
        self._profiles: ProfileSet = services.catalog.files
        self._detector = Detector(self._profiles)
        self._cache = RenderCache(services.settings.render_cache_entries)
        self._box: SecretBox = services.box
        self._digest = DigestVerifier(services.box.derive("digest-nonce"))
        self._device_ha1 = functools.lru_cache(maxsize=HA1_CACHE_ENTRIES)(self._ha1)
        self._base_url = services.settings.device_url + PROVISIONING_PREFIX
        self._uploads = services.settings.data_dir / "uploads"
        self._firmware: FirmwareRuntime = services.firmware
        self._reads = services.reads
        self._carries_firmware: dict[tuple[str, str, str], bool] = {}
        self._decoy = 0  # a registered device's id once one was found; see _facts
        self._device_ca = x509.load_pem_x509_certificate(
            services.pki.device_ca_cert.read_bytes()
        ).subject

    def install(self, app: web.Application) -> None:
        app.router.add_get(PROVISIONING_PREFIX + "{path:.+}", self.get)  # HEAD too
        app.router.add_route("PUT", PROVISIONING_PREFIX + "{path:.+}", self.put)

    # --- GET ---------------------------------------------------------------------------

    async def get(self, request: web.Request) -> web.StreamResponse:
        detection = self._detector.detect(request.match_info["path"], _agent(request))
        if isinstance(detection, Rejection) or detection.file is None:
            return _not_found()
        if detection.file.role in (FileRole.UNSERVED, FileRole.UPLOAD):
            return _not_found()
        # Snom's firmware descriptor is one file per model, but the image URL in it is signed
        # for one device: a requester naming its MAC gets its own, once it proves it.
        per_device = detection.file.role is FileRole.FIRMWARE and detection.mac is not None
        if detection.file.scope is FileScope.COMMON and not per_device:
            return await self._common(request, detection)
        if detection.mac is None:
            return _not_found()
        facts = await self._facts(detection.mac)
        refusal = self._authenticate(request, detection, facts)
        if refusal is not None:
            return refusal
        assert facts is not None
        offer = await self._offer(facts, detection)
        rendered = await self._device_file(facts, detection, offer)
        if rendered is None:
            return _not_found()
        self._ledger.fetched(
            Fetch(
                device_id=facts.id,
                file=request.match_info["path"][:128],
                content_hash=rendered.etag.strip('"'),
                revision=rendered.revision,
                at=utcnow(),
                address=request.remote,
                user_agent=_agent(request),
                firmware_version=detection.firmware_version,
                firmware_managed=facts.firmware_managed,
            )
        )
        return _answer(request, rendered, self._content_type(detection))

    async def _facts(self, mac: str) -> DeviceFacts | None:
        """The device's facts; a MAC nobody registered costs the read of the last device
        found (``device_facts``'s decoy), so 404s and 401s do not tell them apart."""
        facts = await device_facts(self._reads, mac, self._decoy)
        if facts is not None:
            self._decoy = facts.id
        return facts

    def _authenticate(
        self, request: web.Request, detection: Detection, facts: DeviceFacts | None
    ) -> web.Response | None:
        """None when the requester proved it is this device; else the answer to give."""
        device = facts if facts is not None and facts.status is not DeviceStatus.RETIRED else None
        if device is None:
            self._ledger.sighted(
                Sighting(
                    mac=detection.mac or "",
                    vendor=detection.vendor,
                    model=detection.model,
                    firmware_version=detection.firmware_version,
                    address=request.remote,
                    user_agent=_agent(request),
                    at=utcnow(),
                )
            )
        else:
            if self._certificate_proves(client_certificate(request), device):
                return None
            if device.legacy_mac_only:
                return None
        header = request.headers.get("Authorization")
        credentials = parse_authorization(header) if header else None
        if credentials is None:
            return self._challenge(stale=False)
        nonce = self._digest.nonce_state(credentials.nonce)
        if nonce == "stale":
            return self._challenge(stale=True)
        if (
            device is not None
            and device.digest_password is not None
            and credentials.username.lower() == device.mac  # the user name is the MAC
        ):
            secret = self._device_ha1(
                device.id, device.digest_password, credentials.username, credentials.algorithm
            )
        else:
            # Hash a dummy password for unknown devices, so both take about the same time.
            secret = ha1(credentials.username, credentials.algorithm, _DUMMY_PASSWORD)
        valid = self._digest.verify_ha1(credentials, request.method, detection.mac or "", secret)
        if not (device is not None and valid and nonce == "fresh"):
            return _not_found()
        # The request-target as the device sent it (RFC 7616 3.4: "uri"), not re-encoded.
        if credentials.uri != request.raw_path:
            return _not_found()
        return None

    def _certificate_proves(
        self, certificate: x509.Certificate | None, device: DeviceFacts
    ) -> bool:
        """Whether the verified client certificate proves ``device``: one dls's device CA
        issued must be the device's current one (``dls.devices.client_certificates``); a
        vendor's factory certificate must name its MAC."""
        if certificate is None:
            return False
        if certificate.issuer == self._device_ca:
            expected = device.client_certificate_sha256
            return expected is not None and hmac.compare_digest(fingerprint(certificate), expected)
        return _certificate_names(certificate, device.mac)

    def _ha1(self, device_id: int, ciphertext: str, username: str, algorithm: str) -> str | None:
        """The device's Digest HA1 for the spelling and algorithm it uses; memoised (see
        __init__), so a poll does not decrypt the password again. The key holds the
        ciphertext, so a new password (or a rotated key) is a new entry."""
        try:
            password = self._box.decrypt(ciphertext, digest_purpose(device_id))
        except SecretError:
            log.warning("digest password does not decrypt; was the key rotated?")
            return None
        return ha1(username, algorithm, password)

    def _challenge(self, *, stale: bool) -> web.Response:
        response = web.Response(status=401, body=b"authentication required\n")
        for challenge in self._digest.challenges(stale=stale):
            response.headers.add("WWW-Authenticate", challenge)
        return response

    async def _offer(self, facts: DeviceFacts, detection: Detection) -> Offer | None:
        """The firmware offer, only for files that carry its URL: the poll's second query."""
        assert detection.file is not None
        profile = self._profiles.get(facts.vendor)
        model = profile.model(facts.model) if profile else None
        if profile is None or model is None:
            return None
        if not self._carries_firmware_url(profile, model, detection.file):
            return None
        if not facts.firmware_managed and facts.pinned_version is None:
            return None
        return await self._firmware.offer(self._reads, facts, facts.pinned_version)

    def _carries_firmware_url(
        self, profile: VendorProfile, model: ModelSpec, file: FileSpec
    ) -> bool:
        """Whether ``file`` holds the firmware URL, found by rendering it once with a marker
        URL: which file carries it is the renderers' and profiles' business (Poly's master
        attribute, Snom's descriptor, everybody else's config key), not this handler's."""
        key = (profile.vendor, model.name, file.name)
        found = self._carries_firmware.get(key)
        if found is None:
            try:
                body = render(
                    RenderRequest(
                        profile=profile,
                        model=model,
                        file=file,
                        settings=DeviceSettings(),
                        mac=_PROBE_MAC if file.scope is FileScope.DEVICE else None,
                        firmware_url=_PROBE_URL,
                        base_url=self._base_url,
                    )
                )
            except RenderError:
                body = _PROBE_HOST  # cannot tell: look the offer up
            found = self._carries_firmware[key] = _PROBE_HOST in body
        return found

    async def _device_file(
        self, facts: DeviceFacts, detection: Detection, offer: Offer | None
    ) -> Rendered | None:
        """The cached rendering for the device's revision and offer, or a new one: only
        then are the settings documents loaded and decrypted."""
        assert detection.file is not None
        profile = self._profiles.get(facts.vendor)
        if profile is None or profile.vendor != detection.vendor:
            return None
        model = profile.model(facts.model)
        if model is None:
            return None
        firmware_key = offer.cache_key if offer else None
        key = (facts.id, detection.file.name, facts.revision, model.name, firmware_key)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        sources = await settings_sources(self._services.reads, facts.id)
        if sources is None:  # deleted between the two reads
            return None
        try:
            settings = resolve_documents(sources.documents, sources.user_line, self._box).settings
            # The version written beside the URL (Gigaset) is the offered one, never a
            # setting that names a version without an image.
            firmware = FirmwareTarget.model_construct(version=offer.version) if offer else None
            settings = settings.model_copy(update={"firmware": firmware})
            body = render(
                RenderRequest(
                    profile=profile,
                    model=model,
                    file=detection.file,
                    settings=settings,
                    mac=sources.mac,
                    firmware_url=_firmware_url(profile, offer),
                    base_url=self._base_url,
                )
            )
        except (ResolutionError, RenderError, SecretError) as exc:
            log.warning(
                "cannot render %s for device %s: %s",
                detection.file.name,
                facts.id,
                exc,
                extra={"fields": {"revision": sources.revision}},
            )
            return None
        # Filed under the revision just rendered: if a change landed between the two
        # reads, the next poll's facts name the new revision and render again.
        key = (facts.id, detection.file.name, sources.revision, model.name, firmware_key)
        return self._cache.put(key, body, sources.revision)

    async def _common(self, request: web.Request, detection: Detection) -> web.StreamResponse:
        """A file every device of the vendor fetches: system defaults only, never secrets."""
        assert detection.file is not None
        profile = self._profiles[detection.vendor]
        model = detection.model_spec
        if model is None:
            # A common file depends on the model (Yealink's boot file names the model's
            # configuration): without a validated model there is nothing right to send.
            return _not_found()
        reads = self._services.reads
        found = list(await reads.rows(_SYSTEM_REVISION, {}))
        revision = found[0][0] if found else 0
        key = ("common", profile.vendor, detection.file.name, model.name, revision)
        rendered = self._cache.get(key)
        if rendered is None:
            settings = DeviceSettings()
            found = list(await reads.rows(_SYSTEM_DATA, {}))
            if found:
                # Secrets are not decrypted: the renderer's contract keeps them out of
                # common files anyway, and a masked value cannot leak.
                revision, data = found[0]
                layer = decode_layer(data, None, purpose("system", SYSTEM_KEY))
                settings = _without_secrets(layer)
                key = ("common", profile.vendor, detection.file.name, model.name, revision)
            try:
                body = render(
                    RenderRequest(
                        profile=profile,
                        model=model,
                        file=detection.file,
                        settings=settings,
                        base_url=self._base_url,
                    )
                )
            except RenderError as exc:
                log.warning("cannot render common file %s: %s", detection.file.name, exc)
                return _not_found()
            rendered = self._cache.put(key, body)
        return _answer(request, rendered, self._content_type(detection))

    def _content_type(self, detection: Detection) -> str:
        family = self._profiles[detection.vendor].family
        return _CONTENT_TYPES.get(family, "application/xml")

    # --- PUT (Poly logs and overrides) ---------------------------------------------------

    async def put(self, request: web.Request) -> web.StreamResponse:
        """Accept an upload the profile declares, from an authenticated device, size-limited,
        into ``data_dir/uploads/<mac>/``; everything else is refused like an unknown file."""
        path = request.match_info["path"]
        detection = self._detector.detect(path, _agent(request))
        if (
            isinstance(detection, Rejection)
            or detection.file is None
            or detection.file.role is not FileRole.UPLOAD
            or detection.mac is None
        ):
            return _not_found()
        if request.content_length is not None and request.content_length > UPLOAD_LIMIT:
            return web.Response(status=413, body=b"upload too large\n")
        facts = await self._facts(detection.mac)
        refusal = self._authenticate(request, detection, facts)
        if refusal is not None:
            return refusal
        body = bytearray()
        async for chunk in request.content.iter_chunked(65536):
            body += chunk
            if len(body) > UPLOAD_LIMIT:
                return web.Response(status=413, body=b"upload too large\n")
        name = Path(path).name
        target = self._uploads / detection.mac / name
        await asyncio.to_thread(_write, target, bytes(body))
        return web.Response(status=204)


# Common files depend on the system document only: its revision on every request (a
# point read, like a device's facts), its contents when the rendering is not cached.
_IS_SYSTEM = (SettingsDocument.scope == Scope.SYSTEM, SettingsDocument.scope_key == SYSTEM_KEY)
_SYSTEM_REVISION = select(SettingsDocument.revision).where(*_IS_SYSTEM)
_SYSTEM_DATA = select(SettingsDocument.revision, SettingsDocument.data).where(*_IS_SYSTEM)


def _firmware_url(profile: VendorProfile, offer: Offer | None) -> str | None:
    if offer is None:
        return None
    if profile.firmware_location is FirmwareLocation.DIRECTORY:
        return offer.directory_url  # the device appends its own image name (Grandstream)
    return offer.url


def _without_secrets(layer: SettingsLayer) -> DeviceSettings:
    cleaned = layer.model_copy(update={"admin_password": None, "lines": None})
    try:
        return resolve([(Level.SYSTEM, cleaned)]).settings
    except ResolutionError:
        return DeviceSettings()


def _write(target: Path, body: bytes) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_suffix(target.suffix + ".part")
    temporary.write_bytes(body)
    temporary.replace(target)


def _agent(request: web.Request) -> str | None:
    return request.headers.get("User-Agent")


def _certificate_names(certificate: x509.Certificate, mac: str) -> bool:
    """Whether a verified client certificate from a vendor CA names this MAC.

    Vendor factory certificates carry it in CN or a SAN in their own spelling (colons,
    upper case); we accept any of those fields whose hex digits equal the MAC. This is
    our reading of vendor certificates, not a documented format.
    """
    values = [str(attribute.value) for attribute in certificate.subject]
    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        values += [str(name) for name in san.value.get_values_for_type(x509.DNSName)]
    except x509.ExtensionNotFound:
        pass
    return any(
        re.sub(r"[:-]", "", found.group(0)).lower() == mac
        for value in values
        for found in _MAC_IN_TEXT.finditer(value)
    )


def _matches(if_none_match: str | None, etag: str) -> bool:
    """RFC 9110 If-None-Match: ``*`` or a list of (possibly weak) entity tags."""
    if not if_none_match:
        return False
    if if_none_match.strip() == "*":
        return True
    return any(tag.strip().removeprefix("W/") == etag for tag in if_none_match.split(","))


def _not_found() -> web.Response:
    return web.Response(status=404, body=NOT_FOUND_BODY, content_type="text/plain")


def _answer(request: web.Request, rendered: Rendered, content_type: str) -> web.Response:
    if _matches(request.headers.get("If-None-Match"), rendered.etag):
        return web.Response(status=304, headers={"ETag": rendered.etag})
    return web.Response(
        body=rendered.body,
        headers={"ETag": rendered.etag, "Cache-Control": "no-cache"},
        content_type=content_type,
        charset="utf-8",
    )
