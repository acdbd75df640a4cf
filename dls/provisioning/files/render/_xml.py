"""lxml helpers shared by the XML format families: build, never format strings.

Values reach the tree only through lxml, which escapes ``<``, ``&`` and quotes itself;
lxml refuses names and characters XML cannot hold, and those refusals become
``RenderError`` here.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from lxml import etree

from dls.provisioning.files.render.base import RenderError

__all__ = ["element", "serialize", "sub_element", "xml_errors"]

# Fixed text, with double quotes as every vendor example has it: some phone parsers are
# stricter than XML about the declaration (lxml writes single quotes).
_DECLARATION = b'<?xml version="1.0" encoding="UTF-8"?>\n'
_DECLARATION_STANDALONE = b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'


@contextmanager
def xml_errors() -> Iterator[None]:
    """Turn lxml's refusal of a name or character into ``RenderError``."""
    try:
        yield
    except (ValueError, TypeError) as exc:
        raise RenderError(f"cannot write XML: {exc}") from None


def element(tag: str, attributes: Mapping[str, str] | None = None) -> etree._Element:
    with xml_errors():
        return etree.Element(tag, dict(attributes or {}))


def sub_element(
    parent: etree._Element,
    tag: str,
    text: str | None = None,
    attributes: Mapping[str, str] | None = None,
) -> etree._Element:
    with xml_errors():
        child = etree.SubElement(parent, tag, dict(attributes or {}))
        if text is not None:
            child.text = text
    return child


def serialize(root: etree._Element, *, standalone: bool = False) -> bytes:
    with xml_errors():
        body = etree.tostring(root, encoding="UTF-8", xml_declaration=False, pretty_print=True)
    return (_DECLARATION_STANDALONE if standalone else _DECLARATION) + body
