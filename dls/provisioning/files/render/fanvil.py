"""Fanvil ``<sysConf>`` XML (X-series firmware 2.2.10 and later).

Flat keys are element paths: ``sip.line[1].DisplayName`` is
``<sip><line index="1"><DisplayName>``. The legacy ``<VOIP_CONFIG_FILE>`` layout of older
firmware is not rendered; every validated model runs firmware that reads ``sysConf``.
"""

from __future__ import annotations

import re

from lxml import etree

from dls.provisioning.files.profiles import FanvilFormat
from dls.provisioning.files.render._xml import element, serialize, sub_element, xml_errors
from dls.provisioning.files.render.base import RenderRequest
from dls.provisioning.files.render.mapping import vendor_values
from dls.provisioning.files.vocabulary import FormatFamily

__all__ = ["FanvilRenderer"]

_SEGMENT = re.compile(r"^(?P<name>[^\[\]]+)(?:\[(?P<index>[0-9]+)\])?$")


class FanvilRenderer:
    family = FormatFamily.FANVIL_XML

    def render(self, request: RenderRequest) -> bytes:
        spec = request.profile.format
        assert isinstance(spec, FanvilFormat)
        root = element(spec.root)
        sub_element(root, spec.version_element, spec.version)
        nodes: dict[tuple[str, ...], etree._Element] = {}
        for key, value in vendor_values(request).values.items():
            parent = root
            segments = key.split(".")
            for depth in range(1, len(segments)):
                path = tuple(segments[:depth])
                if path not in nodes:
                    nodes[path] = _child(parent, segments[depth - 1])
                parent = nodes[path]
            leaf = _child(parent, segments[-1])
            with xml_errors():
                leaf.text = value
        return serialize(root)


def _child(parent: etree._Element, segment: str) -> etree._Element:
    match = _SEGMENT.match(segment)
    assert match is not None  # the key grammar was checked at profile load / raw filter
    attributes = {"index": match["index"]} if match["index"] else {}
    return sub_element(parent, match["name"], attributes=attributes)
