"""Vendor file formats read back: bytes to the vendor's flat keys, as a handset would.

The inverse of ``dls.provisioning.files.render``: a simulated handset fetches its files
and parses them here, so tests can assert on the settings it ended up with. Keys use the
same flat grammar as profile mappings and raw keys (``account.1.label``,
``user_name[1]``, ``P271``, ``sip.line[1].DisplayName``), so ``parse(render(x))`` can be
compared with the renderer's ``vendor_values(x)`` directly.

XML is parsed the way a server should parse untrusted XML (no DTD, no entities, no
network, bounded size) even though the input is our own: the simulator also runs against
servers under test, whose output is exactly what is being doubted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from lxml import etree

from dls.provisioning.files.profiles import (
    FanvilFormat,
    FlatProfileFormat,
    GigasetFormat,
    KeyValueFormat,
    PValuesFormat,
    VendorProfile,
    XmlAttributesFormat,
    XmlElementsFormat,
)

__all__ = ["MAX_FILE_BYTES", "FormatError", "ParsedFile", "parse_file", "parse_settings"]

MAX_FILE_BYTES = 4 * 1024 * 1024  # far above any real config; bounds a hostile server


class FormatError(ValueError):
    """The bytes are not a well-formed file of the vendor's format."""


@dataclass(frozen=True, slots=True)
class ParsedFile:
    """``settings``: vendor key -> value. ``includes``: files a boot/master file lists
    (as written, e.g. Poly's literal ``[PHONE_MAC_ADDRESS]``). ``meta``: structure that is
    not a setting (Grandstream ``<mac>``, Gigaset handset operations, format versions)."""

    settings: dict[str, str]
    includes: tuple[str, ...] = ()
    meta: dict[str, str] = field(default_factory=dict)


def parse_settings(profile: VendorProfile, data: bytes) -> dict[str, str]:
    """The flat vendor settings in ``data``, a file of ``profile``'s format."""
    return parse_file(profile, data).settings


def parse_file(profile: VendorProfile, data: bytes) -> ParsedFile:
    """Parse one file of ``profile``'s format family; raises ``FormatError``."""
    if len(data) > MAX_FILE_BYTES:
        raise FormatError(f"file of {len(data)} bytes exceeds {MAX_FILE_BYTES}")
    spec = profile.format
    if isinstance(spec, KeyValueFormat):
        return _key_value(spec, data)
    root = _xml(data)
    if isinstance(spec, XmlAttributesFormat):
        return _xml_attributes(spec, root)
    if isinstance(spec, XmlElementsFormat):
        return _xml_elements(spec, root)
    if isinstance(spec, PValuesFormat):
        return _p_values(root)
    if isinstance(spec, FlatProfileFormat):
        return _flat_profile(spec, root)
    if isinstance(spec, GigasetFormat):
        return _gigaset(root)
    assert isinstance(spec, FanvilFormat)
    return _fanvil(spec, root)


def _xml(data: bytes) -> etree._Element:
    parser = etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
    )
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError as exc:
        raise FormatError(f"not well-formed XML: {exc}") from None
    if root.getroottree().docinfo.doctype:
        raise FormatError("a DOCTYPE is not allowed")
    return root


def _expect(root: etree._Element, *tags: str) -> None:
    if root.tag not in tags:
        raise FormatError(f"root element <{root.tag}>, expected {' or '.join(tags)}")


def _key_value(spec: KeyValueFormat, data: bytes) -> ParsedFile:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FormatError(f"not UTF-8: {exc}") from None
    # Phones split on "\n" only; str.splitlines() would also split on U+2028 and friends.
    lines = [line.removesuffix("\r") for line in text.split("\n")]
    if not lines or lines[0].strip() != spec.header:
        raise FormatError(f"first line must be {spec.header!r}")
    prefix, _, suffix = spec.include_line.partition("{file}")
    include = re.compile(rf"^{re.escape(prefix)}(.*){re.escape(suffix)}$")
    settings: dict[str, str] = {}
    includes = []
    for number, raw_line in enumerate(lines[1:], start=2):
        line = raw_line.strip()
        if not line or line.startswith("#"):
            continue
        if match := include.match(line):
            includes.append(match[1])
            continue
        key, separator, value = line.partition("=")
        if not separator or not key.strip():
            raise FormatError(f"line {number}: expected 'key = value'")
        settings[key.strip()] = value.strip()
    return ParsedFile(settings, tuple(includes))


def _xml_attributes(spec: XmlAttributesFormat, root: etree._Element) -> ParsedFile:
    _expect(root, spec.root, spec.master_root)
    settings = {str(key): str(value) for key, value in root.attrib.items()}
    if root.tag != spec.master_root:
        return ParsedFile(settings)
    listed = settings.get(spec.master_includes_attribute, "")
    includes = tuple(name.strip() for name in listed.split(",") if name.strip())
    return ParsedFile(settings, includes)


def _xml_elements(spec: XmlElementsFormat, root: etree._Element) -> ParsedFile:
    _expect(root, spec.root, spec.firmware_root)
    if root.tag == spec.firmware_root:
        return ParsedFile({child.tag: child.text or "" for child in root})
    settings = {}
    for section in root.iterchildren(spec.section):
        for child in section:
            index = child.get("idx")
            key = f"{child.tag}[{index}]" if index is not None else child.tag
            settings[key] = child.text or ""
    return ParsedFile(settings)


def _p_values(root: etree._Element) -> ParsedFile:
    _expect(root, "gs_provision")
    meta = {}
    mac = root.find("mac")
    if mac is not None:
        meta["mac"] = mac.text or ""
    config = root.find("config")
    if config is None:
        raise FormatError("no <config> element")
    return ParsedFile({child.tag: child.text or "" for child in config}, meta=meta)


def _flat_profile(spec: FlatProfileFormat, root: etree._Element) -> ParsedFile:
    _expect(root, spec.root)
    settings: dict[str, str] = {}
    _leaves(root, (), settings)  # nested <router-configuration> keys come back dotted
    return ParsedFile(settings)


def _gigaset(root: etree._Element) -> ParsedFile:
    _expect(root, "provisioning")
    settings: dict[str, str] = {}
    meta: dict[str, str] = {}
    for file in root.iterfind("firmware/file"):
        settings.update({f"firmware@{name}": str(value) for name, value in file.attrib.items()})
    for nvm in root.iterfind("nvm"):
        for child in nvm:
            if child.tag == "param":
                settings[child.get("name", "")] = child.get("value", "")
            elif child.tag == "oper":
                prefix = f"oper/{child.get('name', '')}/{child.get('value', '')}"
                meta[prefix] = ""
                for param in child.iterfind("param"):
                    meta[f"{prefix}/{param.get('name', '')}"] = param.get("value", "")
    return ParsedFile(settings, meta=meta)


def _fanvil(spec: FanvilFormat, root: etree._Element) -> ParsedFile:
    _expect(root, spec.root)
    settings: dict[str, str] = {}
    _leaves(root, (), settings)
    meta = {}
    if spec.version_element in settings:
        meta[spec.version_element] = settings.pop(spec.version_element)
    return ParsedFile(settings, meta=meta)


def _leaves(node: etree._Element, path: tuple[str, ...], into: dict[str, str]) -> None:
    for child in node:
        index = child.get("index")
        segment = f"{child.tag}[{index}]" if index is not None else str(child.tag)
        if len(child):
            _leaves(child, (*path, segment), into)
        else:
            into[".".join((*path, segment))] = child.text or ""
