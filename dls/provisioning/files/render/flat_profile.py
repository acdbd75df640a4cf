"""Cisco SPA ``<flat-profile>``: one element per parameter, ``Proxy_1_`` style names."""

from __future__ import annotations

from dls.provisioning.files.profiles import FlatProfileFormat
from dls.provisioning.files.render._xml import element, serialize, sub_element
from dls.provisioning.files.render.base import RenderRequest
from dls.provisioning.files.render.mapping import vendor_values
from dls.provisioning.files.vocabulary import FormatFamily

__all__ = ["FlatProfileRenderer"]


class FlatProfileRenderer:
    family = FormatFamily.FLAT_PROFILE

    def render(self, request: RenderRequest) -> bytes:
        spec = request.profile.format
        assert isinstance(spec, FlatProfileFormat)
        root = element(spec.root)
        for key, value in vendor_values(request).values.items():
            sub_element(root, key, value)
        return serialize(root)
