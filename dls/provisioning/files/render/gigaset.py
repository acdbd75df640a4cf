"""Gigaset provisioning XML (N870 IP PRO): ``<provisioning><firmware/><nvm><param/>``.

Every line is a handset account: the file first registers each handset slot with the
profile's ``<oper name="add_hs">`` (so the account parameters that follow have a handset
to belong to), then lists the parameters. ``firmware@url``/``firmware@version`` keys
become ``<firmware><file url=".." version=".."/></firmware>``.
"""

from __future__ import annotations

from dls.provisioning.files.profiles import GigasetFormat
from dls.provisioning.files.render._xml import element, serialize, sub_element
from dls.provisioning.files.render.base import RenderRequest
from dls.provisioning.files.render.mapping import vendor_values
from dls.provisioning.files.vocabulary import FormatFamily

__all__ = ["GigasetRenderer"]

_FIRMWARE_PREFIX = "firmware@"


class GigasetRenderer:
    family = FormatFamily.GIGASET_PROVISIONING

    def render(self, request: RenderRequest) -> bytes:
        spec = request.profile.format
        assert isinstance(spec, GigasetFormat)
        result = vendor_values(request)
        root = element("provisioning", spec.root_attributes)
        firmware = {
            key.removeprefix(_FIRMWARE_PREFIX): value
            for key, value in result.values.items()
            if key.startswith(_FIRMWARE_PREFIX)
        }
        if "url" in firmware:
            sub_element(sub_element(root, "firmware"), "file", attributes=firmware)
        nvm = sub_element(root, "nvm")
        for index in result.lines:
            oper = sub_element(
                nvm,
                "oper",
                attributes={"name": spec.handset_oper, "value": spec.handset_id.format(line=index)},
            )
            for name, value in spec.handset_params.items():
                sub_element(oper, "param", attributes={"name": name, "value": value})
        for key, value in result.values.items():
            if not key.startswith(_FIRMWARE_PREFIX):
                sub_element(nvm, "param", attributes={"name": key, "value": value})
        return serialize(root)
