"""XML with every setting as an attribute of one element (Poly).

Config files are ``<polycomConfig key="value" .../>``; boot (master) files are
``<APPLICATION APP_FILE_PATH=".." CONFIG_FILES="a, b"/>``. Poly applies ``device.*`` keys
only with ``device.set="1"`` and ``<key>.set="1"`` (reference), which the profile's
``set_flag_prefix`` turns on.
"""

from __future__ import annotations

from dls.provisioning.files.profiles import XmlAttributesFormat
from dls.provisioning.files.render._xml import element, serialize, xml_errors
from dls.provisioning.files.render.base import RenderRequest, include_names
from dls.provisioning.files.render.mapping import vendor_values
from dls.provisioning.files.vocabulary import FileRole, FormatFamily

__all__ = ["XmlAttributesRenderer"]


class XmlAttributesRenderer:
    family = FormatFamily.XML_ATTRIBUTES

    def render(self, request: RenderRequest) -> bytes:
        spec = request.profile.format
        assert isinstance(spec, XmlAttributesFormat)
        if request.file.role is FileRole.BOOT:
            root = element(spec.master_root)
            with xml_errors():
                if request.firmware_url:
                    root.set(spec.master_firmware_attribute, request.firmware_url)
                root.set(spec.master_includes_attribute, ", ".join(include_names(request)))
            return serialize(root, standalone=True)
        root = element(spec.root)
        prefix = spec.set_flag_prefix
        with xml_errors():
            for key, value in vendor_values(request).values.items():
                flagged = prefix is not None and key.startswith(prefix) and not key.endswith(".set")
                if flagged and root.get(f"{prefix}set") is None:
                    root.set(f"{prefix}set", "1")
                root.set(key, value)
                if flagged:
                    root.set(f"{key}.set", "1")
        return serialize(root, standalone=True)
