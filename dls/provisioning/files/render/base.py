"""The renderer seam: what every format-family renderer is given and must guarantee."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

from dls.devices.settings import DeviceSettings
from dls.provisioning.files.profiles import FileSpec, ModelSpec, VendorProfile
from dls.provisioning.files.vocabulary import FileRole, FileScope, FormatFamily

__all__ = [
    "RENDERED_ROLES",
    "RenderError",
    "RenderRequest",
    "Renderer",
    "check_request",
    "include_names",
    "rendered_files",
]

_MAC = re.compile(r"^[0-9a-f]{12}$")
RENDERED_ROLES = frozenset({FileRole.BOOT, FileRole.CONFIG, FileRole.FIRMWARE})


def rendered_files(
    profile: VendorProfile, model: ModelSpec, mac: str | None
) -> Iterator[tuple[str, FileSpec]]:
    """(name, spec) of each file dls renders for a device of ``model``, in the order the
    device requests them: the files of the roles that are rendered, where they apply."""
    for spec in profile.files:
        if spec.role in RENDERED_ROLES:
            name = profile.file_name(spec, model, mac)
            if name is not None:
                yield name, spec


class RenderError(ValueError):
    """The request breaks a pre-condition, or the result would not be a valid file."""


@dataclass(frozen=True, slots=True)
class RenderRequest:
    """Everything needed to produce one file for one device.

    ``settings`` are the device's *resolved* settings for device files; for common files
    the caller passes settings that hold for every device that may fetch the file (in
    practice the system defaults), since a common file is not per tenant.
    ``firmware_url`` is the image (or directory, see the profile's ``firmware_location``)
    the firmware code chose for this model; ``base_url`` is where this vendor's files are
    served, ending in "/".
    """

    profile: VendorProfile
    model: ModelSpec
    file: FileSpec
    settings: DeviceSettings
    mac: str | None = None
    firmware_url: str | None = None
    base_url: str | None = None

    @property
    def is_common(self) -> bool:
        return self.file.scope is FileScope.COMMON


class Renderer(Protocol):
    """Renders one format family. One instance serves every vendor of the family.

    Called by the device-file handler after detection, identification and settings
    resolution, once per (device, config revision) — the result is cached and its hash is
    the ETag, so output must be deterministic.

    Pre:
      - ``check_request(request)`` holds (model and file belong to the profile, the role is
        one this family renders, a device file has a MAC of 12 lower-case hex digits);
      - ``request.profile.family`` is this renderer's ``family``.
    Post:
      - returns the complete file as bytes (UTF-8);
      - same request, same bytes;
      - a common file holds no secret, no line and no raw key (only non-secret global
        keys and file lists), whatever ``request.settings`` contains;
      - every value, including hostile display names and passwords (``<``, ``&``, quotes,
        non-ASCII), reads back unchanged through the family's parser in ``dls.sim``.
    Raises ``RenderError`` when a pre-condition fails or a value cannot be written; values
    the vendor format cannot represent are left out instead (see ``VendorValues.omitted``).
    """

    @property
    def family(self) -> FormatFamily: ...

    def render(self, request: RenderRequest) -> bytes: ...


def check_request(request: RenderRequest) -> None:
    """Raise ``RenderError`` unless ``request`` meets the renderer pre-conditions."""
    profile = request.profile
    if request.model not in profile.models:
        raise RenderError(f"model {request.model.name} is not in profile {profile.vendor}")
    if request.file not in profile.files:
        raise RenderError(f"file {request.file.name} is not in profile {profile.vendor}")
    if request.file.role not in RENDERED_ROLES:
        raise RenderError(f"file {request.file.name} ({request.file.role}) is never rendered")
    if request.file.scope is FileScope.DEVICE and (
        request.mac is None or not _MAC.match(request.mac)
    ):
        raise RenderError("a device file needs the MAC as 12 lower-case hex digits")
    if profile.file_name(request.file, request.model, request.mac) is None:
        raise RenderError(f"file {request.file.name} does not apply to {request.model.name}")


def include_names(request: RenderRequest) -> list[str]:
    """The file names a boot file lists, for this device."""
    mac = request.profile.render_mac(request.mac or "")
    return [
        include.format(mac=mac, file_id=request.model.file_id or "")
        for include in request.file.includes
    ]
