"""Which firmware a device should run now: the precedence of pins, rollouts and targets.

Most specific first:

1. **pin** - the device's own ``firmware.version`` setting (device level only: a version
   means nothing across vendors, so tenant- or group-wide settings do not pin anything;
   use per-model targets there);
2. **rollout** - an active rollout that released the device offers its version; a device
   only *offered* (not yet downloading) gets it inside the rollout's maintenance window;
3. **targets** per (vendor, model): the device's group, its tenant, the operator's default.

The candidates come from one query: the rollout membership and the three target rows,
each joined to the image imported for its version, so the device path pays one indexed
round trip. ``choose`` is pure. A chosen version without an imported image yields a
selection without an image: nothing is offered, and the effective-config view says why.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import String, and_, bindparam, cast, literal, null, or_, select, union_all
from sqlalchemy.ext.asyncio import AsyncSession

from dls.devices.models import Device, SettingsDocument
from dls.firmware.catalog import model_key
from dls.firmware.engine import ACTIVE_STATUSES, DeviceState, Window
from dls.firmware.models import (
    FirmwareImage,
    FirmwareImageModel,
    FirmwareTarget,
    Rollout,
    RolloutDevice,
    TargetScope,
)
from dls.firmware.targets import SYSTEM_SCOPE_KEY
from dls.firmware.versions import version_key

if TYPE_CHECKING:
    from dls.db.reads import PointReads
    from dls.devices.facts import DeviceFacts

__all__ = [
    "FIRMWARE_PREFIX",
    "Candidate",
    "Explanation",
    "FirmwareSource",
    "ImageRef",
    "Selection",
    "choose",
    "device_pin",
    "explain",
    "load_candidates",
    "select_firmware",
]


FIRMWARE_PREFIX = "/fw/"  # download URLs: <device listener>/fw/<token>/<file name>


class FirmwareSource(enum.StrEnum):
    PIN = "pin"
    ROLLOUT = "rollout"
    GROUP = "group"
    TENANT = "tenant"
    SYSTEM = "system"


_PRECEDENCE = tuple(FirmwareSource)


@dataclass(frozen=True, slots=True)
class ImageRef:
    """An imported image, as the device path needs it."""

    id: int
    version: str
    sha256: str
    size: int
    file_name: str


@dataclass(frozen=True, slots=True)
class Candidate:
    source: FirmwareSource
    version: str
    image: ImageRef | None
    rollout_id: int | None = None
    state: DeviceState | None = None  # the device's state in that rollout
    window: Window | None = None


@dataclass(frozen=True, slots=True)
class Selection:
    """The version the device should run, where that comes from, and its image if any."""

    source: FirmwareSource
    version: str
    image: ImageRef | None
    rollout_id: int | None = None
    rollout_state: DeviceState | None = None


def choose(candidates: Sequence[Candidate], now: dt.datetime) -> Selection | None:
    """The most specific candidate that applies now (precedence in the module docstring)."""
    for source in _PRECEDENCE:
        for candidate in candidates:
            if candidate.source is not source:
                continue
            if source is FirmwareSource.ROLLOUT and not _offered_now(candidate, now):
                continue
            return Selection(
                candidate.source,
                candidate.version,
                candidate.image,
                candidate.rollout_id,
                candidate.state,
            )
    return None


def _offered_now(candidate: Candidate, now: dt.datetime) -> bool:
    # Once the device has started, it keeps getting the rollout's image outside the window:
    # taking the URL away would make it fetch its previous version's URL instead.
    if candidate.state is not DeviceState.OFFERED or candidate.window is None:
        return True
    return candidate.window.is_open(now)


def device_pin(document: SettingsDocument | None) -> str | None:
    """The version the device's own settings document pins, if any."""
    if document is None:
        return None
    firmware = (document.data or {}).get("firmware")
    if isinstance(firmware, dict) and isinstance(firmware.get("version"), str):
        return str(firmware["version"])
    return None


def _candidates_statement():  # type: ignore[no-untyped-def]
    """The one query, built once: the device's values are bound parameters, so the compiled
    form is cached and a poll pays only its execution."""
    rollout = (
        select(
            literal(FirmwareSource.ROLLOUT.value, String).label("source"),
            RolloutDevice.version.label("version"),
            RolloutDevice.version_key.label("version_key"),
            Rollout.id.label("rollout_id"),
            cast(RolloutDevice.state, String).label("state"),
            Rollout.window.label("window"),
        )
        .join(Rollout, Rollout.id == RolloutDevice.rollout_id)
        .where(
            RolloutDevice.device_id == bindparam("device_id"),
            RolloutDevice.state != DeviceState.PENDING,
            # Spelled out, not IN: an expanding IN is rendered anew on every execution.
            or_(*(Rollout.status == status for status in ACTIVE_STATUSES)),
        )
    )
    levels = (
        (TargetScope.SYSTEM, literal(SYSTEM_SCOPE_KEY)),
        (TargetScope.TENANT, bindparam("tenant_id", type_=String)),
        (TargetScope.GROUP, bindparam("group_key", type_=String)),  # NULL matches nothing
    )
    targets = select(
        cast(FirmwareTarget.scope, String),
        FirmwareTarget.version,
        FirmwareTarget.version_key,
        null(),
        null(),
        null(),
    ).where(
        FirmwareTarget.vendor == bindparam("vendor"),
        FirmwareTarget.model_key == bindparam("model_key"),
        or_(*(and_(FirmwareTarget.scope == s, FirmwareTarget.scope_key == k) for s, k in levels)),
    )
    pin = select(
        literal(FirmwareSource.PIN.value, String),
        bindparam("pin", type_=String),
        bindparam("pin_key", type_=String),
        null(),
        null(),
        null(),
    ).where(bindparam("pin_key", type_=String).is_not(None))
    found = union_all(rollout, targets, pin).subquery("candidates")
    return (
        select(
            found,
            FirmwareImage.id.label("image_id"),
            FirmwareImage.version.label("image_version"),
            FirmwareImage.sha256,
            FirmwareImage.size,
            FirmwareImage.file_name,
        )
        .outerjoin(
            FirmwareImageModel,
            and_(
                FirmwareImageModel.vendor == bindparam("vendor"),
                FirmwareImageModel.model_key == bindparam("model_key"),
                FirmwareImageModel.version_key == found.c.version_key,
            ),
        )
        .outerjoin(FirmwareImage, FirmwareImage.id == FirmwareImageModel.image_id)
    )


_CANDIDATES = _candidates_statement()


async def load_candidates(
    session: AsyncSession | PointReads, device: Device | DeviceFacts, pin: str | None
) -> list[Candidate]:
    """Every candidate for ``device`` with its image, in one query (in a session, or as
    the device path's point read)."""
    parameters = {
        "device_id": device.id,
        "tenant_id": device.tenant_id,
        "group_key": str(device.group_id) if device.group_id is not None else None,
        "vendor": device.vendor,
        "model_key": model_key(device.model),
        "pin": pin,
        "pin_key": version_key(pin) if pin is not None else None,
    }
    statement = _CANDIDATES
    candidates = []
    for row in await session.execute(statement, parameters):
        image = (
            ImageRef(row.image_id, row.image_version, row.sha256, row.size, row.file_name)
            if row.image_id is not None
            else None
        )
        candidates.append(
            Candidate(
                FirmwareSource(row.source),
                row.version,
                image,
                row.rollout_id,
                DeviceState(row.state) if row.state else None,
                Window.from_json(row.window),
            )
        )
    return candidates


async def select_firmware(
    session: AsyncSession | PointReads,
    device: Device | DeviceFacts,
    pin: str | None,
    now: dt.datetime,
) -> Selection | None:
    return choose(await load_candidates(session, device, pin), now)


@dataclass(frozen=True, slots=True)
class Explanation:
    """For the effective-config view: what applies, what else was considered, and why a
    device gets nothing."""

    selection: Selection | None
    candidates: tuple[Candidate, ...]
    problems: tuple[str, ...]


_LEVELS_ABOVE_DEVICE = ("system", "tenant", "group", "user")


async def explain(
    session: AsyncSession,
    device: Device,
    documents: Sequence[SettingsDocument | None],
    now: dt.datetime,
) -> Explanation:
    """``documents``: the device's settings documents, system to device (DeviceContext)."""
    candidates = await load_candidates(session, device, device_pin(documents[-1]))
    selection = choose(candidates, now)
    problems = [
        f"firmware.version in the {level} settings pins nothing (only the device's own "
        "setting does); set a target per model instead"
        for level, document in zip(_LEVELS_ABOVE_DEVICE, documents[:-1], strict=False)
        if device_pin(document) is not None
    ]
    if selection is not None and selection.image is None:
        problems.append(
            f"no image of {device.vendor} {device.model} {selection.version} is imported: "
            "nothing is offered"
        )
    return Explanation(selection, tuple(candidates), tuple(problems))
