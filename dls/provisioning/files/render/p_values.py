"""Grandstream P-values: ``<gs_provision><mac/><config><P271>1</P271>...``.

The ``<mac>`` element goes into device files only: when present the device checks it
against its own MAC (reference), which is what keeps a file from configuring the wrong
box, and a common file has no single MAC to name.
"""

from __future__ import annotations

from dls.provisioning.files.profiles import PValuesFormat
from dls.provisioning.files.render._xml import element, serialize, sub_element
from dls.provisioning.files.render.base import RenderRequest
from dls.provisioning.files.render.mapping import vendor_values
from dls.provisioning.files.vocabulary import FormatFamily

__all__ = ["PValuesRenderer"]


class PValuesRenderer:
    family = FormatFamily.P_VALUES

    def render(self, request: RenderRequest) -> bytes:
        spec = request.profile.format
        assert isinstance(spec, PValuesFormat)
        root = element("gs_provision", {"version": spec.provision_version})
        if spec.include_mac and not request.is_common and request.mac:
            sub_element(root, "mac", request.mac)
        config = sub_element(root, "config", attributes={"version": spec.config_version})
        for key, value in vendor_values(request).values.items():
            sub_element(config, key, value)
        return serialize(root)
