"""Renderers, one per format family, behind the ``Renderer`` protocol.

``render(request)`` picks the family's renderer from the request's profile; the family
modules know their layout, ``mapping`` decides which vendor keys a file gets.
"""

from __future__ import annotations

from dls.provisioning.files.render.base import (
    Renderer,
    RenderError,
    RenderRequest,
    check_request,
    rendered_files,
)
from dls.provisioning.files.render.fanvil import FanvilRenderer
from dls.provisioning.files.render.flat_profile import FlatProfileRenderer
from dls.provisioning.files.render.gigaset import GigasetRenderer
from dls.provisioning.files.render.key_value import KeyValueRenderer
from dls.provisioning.files.render.mapping import Omission, VendorValues, vendor_values
from dls.provisioning.files.render.p_values import PValuesRenderer
from dls.provisioning.files.render.xml_attributes import XmlAttributesRenderer
from dls.provisioning.files.render.xml_elements import XmlElementsRenderer
from dls.provisioning.files.vocabulary import FormatFamily

__all__ = [
    "RENDERERS",
    "Omission",
    "RenderError",
    "RenderRequest",
    "Renderer",
    "VendorValues",
    "render",
    "rendered_files",
    "renderer_for",
    "vendor_values",
]

RENDERERS: dict[FormatFamily, Renderer] = {
    renderer.family: renderer
    for renderer in (
        KeyValueRenderer(),
        XmlAttributesRenderer(),
        XmlElementsRenderer(),
        PValuesRenderer(),
        FlatProfileRenderer(),
        GigasetRenderer(),
        FanvilRenderer(),
    )
}


def renderer_for(family: FormatFamily) -> Renderer:
    return RENDERERS[family]


def render(request: RenderRequest) -> bytes:
    """Check the pre-conditions, then render with the profile's family renderer."""
    check_request(request)
    return RENDERERS[request.profile.family].render(request)
