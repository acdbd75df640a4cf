"""What a device will fetch, rendered for an admin with every secret masked."""

from __future__ import annotations

from dls.devices.effective import DeviceContext
from dls.devices.settings import DeviceSettings
from dls.provisioning.files.handler import PROVISIONING_PREFIX
from dls.provisioning.files.render import RenderError, RenderRequest, render, rendered_files
from dls.provisioning.files.vocabulary import FileScope
from dls.services import Services

__all__ = ["render_previews"]


def render_previews(
    services: Services, context: DeviceContext, masked: DeviceSettings
) -> list[tuple[str, str]]:
    """(file name, content) for each file of the device's profile, in request order.

    ``masked`` are the device's settings resolved without the key, so passwords read as
    the mask: the preview is the real renderer's output with nothing secret in it.
    """
    device = context.device
    profile = services.catalog.files.get(device.vendor)
    if profile is None:
        return []  # WPI vendors get items, not files
    model = profile.model(device.model)
    if model is None:
        return []
    previews = []
    for name, spec in rendered_files(profile, model, device.mac):
        try:
            body = render(
                RenderRequest(
                    profile=profile,
                    model=model,
                    file=spec,
                    settings=masked if spec.scope is FileScope.DEVICE else DeviceSettings(),
                    mac=device.mac,
                    base_url=services.settings.device_url + PROVISIONING_PREFIX,
                )
            )
        except RenderError as exc:
            previews.append((name, f"# cannot render: {exc}"))
            continue
        previews.append((name, body.decode("utf-8", errors="replace")))
    return previews
