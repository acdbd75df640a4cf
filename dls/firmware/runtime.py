"""One process's firmware machinery, and the calls other delivery channels make into it.

``FirmwareRuntime`` holds the image store, the token signer, the image cache, the download
log and the rollout driver; ``Services`` builds one per process. The device path asks it
what a device should be offered, and tells it what devices report:

- ``offer(session, device, pin)`` / ``offer_for(session, device)``: the version the device
  should run now (pin, rollout, targets; ``dls.firmware.delivery``) and the signed URL of
  its image, or None when there is nothing to offer. File-provisioned phones find
  ``offer.url`` in a rendered file. Unify phones get it as a WPI SoftwareDeployment job:
  ``dls.provisioning.wpi.firmware`` asks for the offer when a phone opens an interaction
  and queues a ``device_jobs`` row (``offer.url`` in ``file-https-base-url``, the dotted
  ``offer.version`` in ``file-sw-version``) when the phone runs another version.
- ``report_version(...)`` / ``report_failure(...)``: what a device now runs, or that its
  install failed (``dls.provisioning.wpi.firmware`` reports a SoftwareDeployment job that
  ended failed). Version reports that reach the provisioning ledger (User-Agent of a file
  fetch, ``software-version`` of a WPI session) arrive here by themselves through
  ``on_fetches``, the ledger's flush observer.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import quote

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dls.config import Settings
from dls.db.engine import WRITER
from dls.db.reads import PointReads
from dls.db.types import utcnow
from dls.devices.facts import DeviceFacts
from dls.devices.models import Device, Scope, SettingsDocument
from dls.firmware.blobstore import BlobStore
from dls.firmware.catalog import DEFAULT_CATALOG_DIR, FirmwareCatalog, load_catalog
from dls.firmware.delivery import (
    FIRMWARE_PREFIX,
    ImageRef,
    Selection,
    device_pin,
    select_firmware,
)
from dls.firmware.driver import RolloutDriver
from dls.firmware.models import FirmwareImage
from dls.firmware.progress import DownloadLog, record_failure, record_reports
from dls.firmware.tokens import TOKEN_KEY_LABEL, DownloadTokens
from dls.secretbox import SecretBox

if TYPE_CHECKING:
    from dls.provisioning.ledger import Fetch

__all__ = ["FirmwareRuntime", "Offer"]

log = logging.getLogger(__name__)

# Characters left as they are in the file name part of a URL: vendors' names such as
# "T46U(T43U,T46U,T41U,T48U,T42U,T44U,T44W)-108.86.0.90.rom" must reach the phone intact.
_URL_SAFE = "()!$&'*+,;=:@-._~"


@dataclass(frozen=True, slots=True)
class Offer:
    """What a device is offered: the selection, its image and where to download it.

    ``url`` names the image; ``directory_url`` is for devices that append their own image
    name (Grandstream P192). ``cache_key`` changes exactly when the rendered URL does.
    """

    selection: Selection
    image: ImageRef
    url: str
    directory_url: str
    cache_key: tuple[int, str, int]

    @property
    def version(self) -> str:
        return self.selection.version


class FirmwareRuntime:
    def __init__(
        self,
        settings: Settings,
        sessions: async_sessionmaker[AsyncSession],
        box: SecretBox,
    ) -> None:
        self.settings = settings
        self._sessions = sessions
        self.store = BlobStore(
            settings.effective_firmware_dir, max_size=settings.firmware_max_image_size
        )
        self.tokens = DownloadTokens(box.derive(TOKEN_KEY_LABEL), settings.firmware_url_ttl)
        self.downloads = DownloadLog(sessions)
        self.driver = RolloutDriver(sessions, settings.firmware_rollout_interval)
        self._base = settings.device_url + FIRMWARE_PREFIX
        self._images: dict[int, ImageRef] = {}
        self._catalog: FirmwareCatalog | None = None

    @property
    def catalog(self) -> FirmwareCatalog:
        """The manifests, loaded on first use (``dls serve`` checks them at start-up)."""
        if self._catalog is None:
            self._catalog = load_catalog(self.settings.firmware_catalog_dir or DEFAULT_CATALOG_DIR)
        return self._catalog

    async def start(self) -> None:
        await self.downloads.start()
        await self.driver.start()

    async def stop(self) -> None:
        await self.driver.stop()
        await self.downloads.stop()

    # --- what a device is offered ------------------------------------------------------------

    async def offer(
        self,
        session: AsyncSession | PointReads,
        device: Device | DeviceFacts,
        pin: str | None,
        now: dt.datetime | None = None,
    ) -> Offer | None:
        """The offer for ``device`` whose own settings pin ``pin`` (see ``device_pin``)."""
        now = now or utcnow()
        selection = await select_firmware(session, device, pin, now)
        if selection is None or selection.image is None:
            return None
        image = selection.image
        self._images.setdefault(image.id, image)
        stamp = now.timestamp()
        token = self.tokens.issue(device.id, device.mac, image.id, stamp)
        directory = f"{self._base}{token}/"
        return Offer(
            selection,
            image,
            directory + quote(image.file_name, safe=_URL_SAFE),
            directory,
            (image.id, selection.version, self.tokens.bucket(stamp)),
        )

    async def offer_for(
        self, session: AsyncSession, device: Device, now: dt.datetime | None = None
    ) -> Offer | None:
        """The offer for a device known only by its row (reads its own settings document).

        The file and WPI device paths call ``offer`` instead, with the pin their device
        facts already carry (``DeviceFacts.pinned_version``): one query less.
        """
        document = await session.scalar(
            select(SettingsDocument).where(
                SettingsDocument.scope == Scope.DEVICE,
                SettingsDocument.scope_key == str(device.id),
            )
        )
        return await self.offer(session, device, device_pin(document), now)

    async def image(self, image_id: int) -> ImageRef | None:
        """An image by id, for the download path; images never change once imported."""
        found = self._images.get(image_id)
        if found is not None:
            return found
        async with self._sessions() as session:
            row = await session.get(FirmwareImage, image_id)
        if row is None:
            return None
        found = ImageRef(row.id, row.version, row.sha256, row.size, row.file_name)
        self._images[image_id] = found
        return found

    # --- what devices report -----------------------------------------------------------------

    async def report_version(
        self, session: AsyncSession, device_id: int, version: str, now: dt.datetime | None = None
    ) -> None:
        """``device_id`` now runs ``version`` (in the caller's transaction)."""
        if await record_reports(session, {device_id: version}, now or utcnow()):
            self.driver.nudge()

    async def report_failure(
        self, session: AsyncSession, device_id: int, detail: str, now: dt.datetime | None = None
    ) -> None:
        """The device's install failed: a WPI SoftwareDeployment job ended failed (refused,
        unanswered, or the phone's ``status`` report of the image). Counts only while the
        device is offered or downloading in an active rollout."""
        if await record_failure(session, device_id, detail, now or utcnow()):
            self.driver.nudge()

    async def on_fetches(self, fetches: Sequence[Fetch]) -> None:
        """Ledger observer: the versions in a flushed batch of fetches.

        Only from devices that were firmware-managed when they fetched: a report matters
        only to a device a rollout has offered an image (an open membership is past
        pending, so its facts say managed). Without any, as in most seconds of most
        deployments, the batch costs no transaction; a device that became managed after
        its fetch reports again with its next one.
        """
        reports = {
            f.device_id: f.firmware_version
            for f in fetches
            if f.firmware_version and f.firmware_managed
        }
        if not reports:
            return
        async with self._sessions() as session, session.begin():
            # It reads, then writes: on SQLite that fails at once if another connection
            # (the ledger, a WPI message) committed in between, so it takes the lock first.
            await session.connection(execution_options=WRITER)
            changed = await record_reports(session, reports, utcnow())
        if changed:
            self.driver.nudge()
