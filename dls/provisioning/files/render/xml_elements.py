"""XML elements with ``idx`` and ``perm`` attributes (Snom ``<settings>``).

Flat key ``user_name[2]`` is ``<user_name idx="2" perm="R">``; ``perm`` comes from the
profile (R: the user cannot change it on the phone). The firmware file is
``<firmware-settings><firmware>URL</firmware></firmware-settings>``, which the config's
``firmware_status`` points at.
"""

from __future__ import annotations

from dls.provisioning.files.profiles import XmlElementsFormat
from dls.provisioning.files.render._xml import element, serialize, sub_element
from dls.provisioning.files.render.base import RenderError, RenderRequest
from dls.provisioning.files.render.mapping import vendor_values
from dls.provisioning.files.vocabulary import FAMILY_KEY_PATTERNS, FileRole, FormatFamily

__all__ = ["XmlElementsRenderer"]

_KEY = FAMILY_KEY_PATTERNS[FormatFamily.XML_ELEMENTS]


class XmlElementsRenderer:
    family = FormatFamily.XML_ELEMENTS

    def render(self, request: RenderRequest) -> bytes:
        spec = request.profile.format
        assert isinstance(spec, XmlElementsFormat)
        if request.file.role is FileRole.FIRMWARE:
            root = element(spec.firmware_root)
            if request.firmware_url:
                sub_element(root, request.profile.firmware_key, request.firmware_url)
            return serialize(root)
        root = element(spec.root)
        section = sub_element(root, spec.section)
        for key, value in vendor_values(request).values.items():
            match = _KEY.match(key)
            if match is None:
                raise RenderError(f"{key}: not a {self.family} key")
            attributes = {"idx": match["idx"]} if match["idx"] else {}
            attributes["perm"] = spec.perm
            sub_element(section, match["name"], value, attributes)
        return serialize(root)
