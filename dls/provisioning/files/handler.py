"""Serving configuration files to 3rd-party phones and ATAs under ``/prov/``.

One request, top to bottom (DESIGN.md's data flow): detect the device from path and
User-Agent -> identify it by MAC (one indexed query) and decide trust (client certificate,
HTTP Digest, or the tenant's legacy MAC-only mode) -> resolve its settings and, for the
files that carry the firmware URL, the firmware offer (``dls.firmware.delivery``) ->
render, or take the rendering cached for this revision and offer -> record the fetch in the
ledger buffer (no database write here). Anything untrusted gets nothing secret: an unknown
MAC and a wrong password get the same 404 (``trust``).
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from aiohttp import web
from cryptography import x509
from sqlalchemy import select

from dls.db.types import utcnow
from dls.devices.effective import SYSTEM_KEY, resolve_documents, settings_sources
from dls.devices.facts import DeviceFacts, device_facts
from dls.devices.inheritance import Level, ResolutionError, SettingsLayer, resolve
from dls.devices.layers import decode_layer, purpose
from dls.devices.models import Scope, SettingsDocument
from dls.devices.settings import DeviceSettings, FirmwareTarget
from dls.firmware.runtime import FirmwareRuntime, Offer
from dls.provisioning.files.detect import Detection, Detector, Rejection
from dls.provisioning.files.outcomes import Outcome, counted, rejected
from dls.provisioning.files.profiles import FileSpec, ModelSpec, ProfileSet, VendorProfile
from dls.provisioning.files.render import RenderError, RenderRequest, render
from dls.provisioning.files.render_cache import Failed, RenderCache, Rendered
from dls.provisioning.files.trust import DeviceTrust, not_found
from dls.provisioning.files.vocabulary import FileRole, FileScope, FirmwareLocation, FormatFamily
from dls.provisioning.ledger import Fetch, Ledger
from dls.quiet import QuietLog
from dls.request_body import BodyRefused, read_body
from dls.secretbox import SecretBox, SecretError
from dls.services import Services

__all__ = ["PROVISIONING_PREFIX", "FileProvisioner"]

log = logging.getLogger(__name__)

PROVISIONING_PREFIX = "/prov/"
UPLOAD_LIMIT = 1024 * 1024  # bytes per uploaded file (Poly logs, overrides)
# A marker URL rendered once per (vendor, model, file) to learn which files carry it.
_PROBE_HOST = b"firmware-probe.invalid"
_PROBE_URL = "https://firmware-probe.invalid/fw/probe/"
_PROBE_MAC = "000000000001"

_CONTENT_TYPES = {FormatFamily.KEY_VALUE: "text/plain"}


class FileProvisioner:
    def __init__(self, services: Services, ledger: Ledger) -> None:
        self._services = services
        self._ledger = ledger
        self._profiles: ProfileSet = services.catalog.files
        self._detector = Detector(self._profiles)
        self._cache = RenderCache(services.settings.render_cache_entries)
        self._quiet = QuietLog(log)
        self._box: SecretBox = services.box
        self._base_url = services.settings.device_url + PROVISIONING_PREFIX
        self._uploads = services.settings.data_dir / "uploads"
        self._firmware: FirmwareRuntime = services.firmware
        self._reads = services.reads
        self._carries_firmware: dict[tuple[str, str, str], bool] = {}
        self._decoy = 0  # a registered device's id once one was found; see _facts
        device_ca = x509.load_pem_x509_certificate(services.pki.device_ca_cert.read_bytes())
        self._trust = DeviceTrust(services.box, ledger, device_ca.subject)

    def install(self, app: web.Application) -> None:
        app.router.add_get(PROVISIONING_PREFIX + "{path:.+}", self.get)  # HEAD too
        app.router.add_route("PUT", PROVISIONING_PREFIX + "{path:.+}", self.put)

    # --- GET ---------------------------------------------------------------------------

    async def get(self, request: web.Request) -> web.StreamResponse:
        detection = self._detector.detect(request.match_info["path"], _agent(request))
        if isinstance(detection, Rejection):
            return rejected(detection, not_found())
        vendor = detection.vendor
        if detection.file is None or detection.file.role in (FileRole.UNSERVED, FileRole.UPLOAD):
            return counted(vendor, Outcome.NOT_SERVED, not_found())
        # Snom's firmware descriptor is one file per model, but the image URL in it is signed
        # for one device: a requester naming its MAC gets its own, once it proves it.
        per_device = detection.file.role is FileRole.FIRMWARE and detection.mac is not None
        if detection.file.scope is FileScope.COMMON and not per_device:
            return await self._common(request, detection)
        if detection.mac is None:
            return counted(vendor, Outcome.NOT_SERVED, not_found())
        facts = await self._facts(detection.mac)
        refusal = self._trust.check(request, detection, facts)
        if refusal is not None:
            return counted(vendor, refusal.outcome, refusal.response)
        assert facts is not None
        offer = await self._offer(facts, detection)
        rendered = await self._device_file(facts, detection, offer)
        if rendered is None:
            return counted(vendor, Outcome.UNRENDERED, not_found())
        if request.method == "HEAD":  # answered, but the device has not taken the file
            return self._answer(request, rendered, detection)
        self._ledger.fetched(
            Fetch(
                device_id=facts.id,
                file=request.match_info["path"],
                content_hash=rendered.etag.strip('"'),
                revision=rendered.revision,
                at=utcnow(),
                address=request.remote,
                user_agent=_agent(request),
                firmware_version=detection.firmware_version,
                firmware_managed=facts.firmware_managed,
            )
        )
        return self._answer(request, rendered, detection)

    async def _facts(self, mac: str) -> DeviceFacts | None:
        """The device's facts; a MAC nobody registered costs the read of the last device
        found (``device_facts``'s decoy), so 404s and 401s do not tell them apart."""
        facts = await device_facts(self._reads, mac, self._decoy)
        if facts is not None:
            self._decoy = facts.id
        return facts

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
        then are the settings documents loaded and decrypted. A rendering that failed is
        kept too, and logged once: it fails the same way until the revision changes."""
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
            return cached if isinstance(cached, Rendered) else None
        sources = await settings_sources(self._services.reads, facts.id)
        if sources is None:  # deleted between the two reads
            return None
        # Filed under the revision about to be rendered: if a change landed between the
        # two reads, the next poll's facts name the new revision and render again.
        key = (facts.id, detection.file.name, sources.revision, model.name, firmware_key)
        try:
            settings = resolve_documents(
                sources.documents, sources.user_line, self._box, self._services.layers
            ).settings
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
            # One tenant's bad settings fail all its phones alike: one warning says so.
            reason = f"cannot render {detection.file.name}: {exc}"
            self._quiet.warning(reason, device=facts.id, revision=sources.revision)
            self._cache.failed(key)
            return None
        return self._cache.put(key, body, sources.revision)

    async def _common(self, request: web.Request, detection: Detection) -> web.StreamResponse:
        """A file every device of the vendor fetches: system defaults only, never secrets."""
        assert detection.file is not None
        profile = self._profiles[detection.vendor]
        model = detection.model_spec
        if model is None:
            # A common file depends on the model (Yealink's boot file names the model's
            # configuration): without a validated model there is nothing right to send.
            return counted(profile.vendor, Outcome.UNRENDERED, not_found())
        reads = self._services.reads
        found = list(await reads.rows(_SYSTEM_REVISION, {}))
        revision = found[0][0] if found else 0
        key = ("common", profile.vendor, detection.file.name, model.name, revision)
        rendered = self._cache.get(key)
        if isinstance(rendered, Failed):
            return counted(profile.vendor, Outcome.UNRENDERED, not_found())
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
                self._quiet.warning(f"cannot render common file {detection.file.name}: {exc}")
                self._cache.failed(key)
                return counted(profile.vendor, Outcome.UNRENDERED, not_found())
            rendered = self._cache.put(key, body)
        return self._answer(request, rendered, detection)

    def _answer(
        self, request: web.Request, rendered: Rendered, detection: Detection
    ) -> web.Response:
        family = self._profiles[detection.vendor].family
        content_type = _CONTENT_TYPES.get(family, "application/xml")
        return _answer(request, rendered, content_type, detection.vendor)

    # --- PUT (Poly logs and overrides) ---------------------------------------------------

    async def put(self, request: web.Request) -> web.StreamResponse:
        """Accept an upload the profile declares, from an authenticated device, size-limited,
        into ``data_dir/uploads/<mac>/``; everything else is refused like an unknown file."""
        path = request.match_info["path"]
        detection = self._detector.detect(path, _agent(request))
        if isinstance(detection, Rejection):
            return rejected(detection, not_found())
        vendor = detection.vendor
        if (
            detection.file is None
            or detection.file.role is not FileRole.UPLOAD
            or detection.mac is None
        ):
            return counted(vendor, Outcome.NOT_SERVED, not_found())
        if request.content_length is not None and request.content_length > UPLOAD_LIMIT:
            return counted(vendor, Outcome.TOO_LARGE, _too_large())
        facts = await self._facts(detection.mac)
        refusal = self._trust.check(request, detection, facts)
        if refusal is not None:
            return counted(vendor, refusal.outcome, refusal.response)
        try:
            body = await read_body(request, self._services.settings.body_timeout)
        except BodyRefused as refused:
            outcome = Outcome.TOO_LARGE if refused.status == 413 else Outcome.INCOMPLETE
            return counted(vendor, outcome, refused.response())
        if len(body) > UPLOAD_LIMIT:
            return counted(vendor, Outcome.TOO_LARGE, _too_large())
        name = Path(path).name
        target = self._uploads / detection.mac / name
        await asyncio.to_thread(_write, target, body)
        return counted(vendor, Outcome.UPLOADED, web.Response(status=204))


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


def _matches(if_none_match: str | None, etag: str) -> bool:
    """RFC 9110 If-None-Match: ``*`` or a list of (possibly weak) entity tags."""
    if not if_none_match:
        return False
    if if_none_match.strip() == "*":
        return True
    return any(tag.strip().removeprefix("W/") == etag for tag in if_none_match.split(","))


def _too_large() -> web.Response:
    return web.Response(status=413, body=b"upload too large\n")


def _answer(
    request: web.Request, rendered: Rendered, content_type: str, vendor: str
) -> web.Response:
    if _matches(request.headers.get("If-None-Match"), rendered.etag):
        unchanged = web.Response(status=304, headers={"ETag": rendered.etag})
        return counted(vendor, Outcome.NOT_MODIFIED, unchanged)
    response = web.Response(
        body=rendered.body,
        headers={"ETag": rendered.etag, "Cache-Control": "no-cache"},
        content_type=content_type,
        charset="utf-8",
    )
    return counted(vendor, Outcome.SERVED, response)
