"""The WPI wire layer: untrusted request bytes to an lxml tree, and answer trees to bytes.

Every WPI body comes from a device we have not authenticated yet (default mode has no
mutual TLS, see the reference §13), so the parser is the first thing an attacker reaches.
The cheap checks run first, before libxml2 sees a byte: size, then DTD markup, then the
declared encoding, then UTF-8 validity. After parsing, the tree's depth and element count
are bounded by C-level XPath, so no Python recursion or per-node loop runs on hostile
input. Every failure is one exception type, :class:`WpiFormatError`, whose reason is
short and fixed so the HTTP layer can send it as a 400 body without echoing input.
"""

from __future__ import annotations

import re
import threading

from lxml import etree

__all__ = [
    "MAX_BODY_BYTES",
    "MAX_DEPTH",
    "MAX_ELEMENTS",
    "WpiFormatError",
    "parse_document",
    "serialise_document",
]

MAX_BODY_BYTES = 1024 * 1024  # bytes (1 MiB); a full ReadAllItems reply is tens of KiB
# Elements, counting the root. A WPI body is four deep (WorkpointMessage/Message/ItemList/
# Item); the slack allows harmless wrapping but stops libxml2's own limit (256) being ours.
MAX_DEPTH = 16
# Elements per body, our bound: a full ReadAllItems is a few thousand items at most, and
# the typed layer builds one object per Item, so this caps its work too.
MAX_ELEMENTS = 65_536

# Only UTF-8 is documented [DG p.30]. "utf8" is not an IANA name but means the same bytes.
_ACCEPTED_ENCODINGS = frozenset({"utf-8", "utf8"})
_DECLARED_ENCODING = re.compile(
    rb"\A(?:\xef\xbb\xbf)?\s*<\?xml[^>]*?\sencoding\s*=\s*[\"']([^\"']*)[\"']"
)
_DECLARATION_WINDOW = 256  # bytes; a declaration is at the very start and short

# A DOCTYPE is the only way to declare entities (billion laughs, external file:// or
# http:// entities); WPI never uses one, so any occurrence is refused before parsing.
_DTD_MARKUP = (b"<!DOCTYPE", b"<!ENTITY")
# Bytes that start a UTF-16 or UTF-32 document, with or without a byte order mark.
_WIDE_ENCODING_PREFIXES = (b"\xff\xfe", b"\xfe\xff", b"\x00\x00", b"<\x00", b"\x00<")

_TOO_DEEP = etree.XPath("boolean(" + "/*" * (MAX_DEPTH + 1) + ")")
_COUNT_ELEMENTS = etree.XPath("count(//*)")

_XML_DECLARATION = b'<?xml version="1.0" encoding="UTF-8"?>\n'

_local = threading.local()


class WpiFormatError(ValueError):
    """The body is not an acceptable WPI document; ``reason`` is safe to show the client."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _parser() -> etree.XMLParser:
    """One hardened parser per thread: lxml parser objects must not be shared across threads."""
    parser: etree.XMLParser | None = getattr(_local, "parser", None)
    if parser is None:
        parser = etree.XMLParser(
            encoding="utf-8",  # ignore any auto-detection; the bytes were checked as UTF-8
            resolve_entities=False,
            no_network=True,
            load_dtd=False,
            dtd_validation=False,
            attribute_defaults=False,
            huge_tree=False,  # keeps libxml2's own text-node and depth limits switched on
            remove_comments=True,
            remove_pis=True,
            collect_ids=False,
            recover=False,
        )
        _local.parser = parser
    return parser


def parse_document(body: bytes) -> etree._Element:
    """Parse an untrusted WPI body into its root element, or raise :class:`WpiFormatError`."""
    if len(body) > MAX_BODY_BYTES:
        raise WpiFormatError("body too large")
    if not body or body.isspace():
        raise WpiFormatError("empty body")
    if any(markup in body for markup in _DTD_MARKUP):
        raise WpiFormatError("DOCTYPE and entity declarations are not allowed")
    if body.startswith(_WIDE_ENCODING_PREFIXES):
        raise WpiFormatError("encoding must be UTF-8")
    declared = _DECLARED_ENCODING.match(body, 0, _DECLARATION_WINDOW)
    if declared and declared.group(1).decode("ascii", "replace").lower() not in (
        _ACCEPTED_ENCODINGS
    ):
        raise WpiFormatError("encoding must be UTF-8")
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        raise WpiFormatError("body is not valid UTF-8") from None
    try:
        root = etree.fromstring(body, _parser())
    except (etree.LxmlError, ValueError):
        raise WpiFormatError("malformed XML") from None
    tree = root.getroottree()
    if tree.docinfo.internalDTD is not None or tree.docinfo.doctype:
        raise WpiFormatError("DOCTYPE and entity declarations are not allowed")
    if _TOO_DEEP(root):
        raise WpiFormatError("elements nested too deep")
    if _COUNT_ELEMENTS(root) > MAX_ELEMENTS:
        raise WpiFormatError("too many elements")
    return root


def serialise_document(root: etree._Element) -> bytes:
    """Render an answer tree as UTF-8 bytes behind an XML declaration.

    The declaration is written with double quotes (lxml's own uses single quotes) because
    that is how Java-era servers wrote it; whether phone firmware cares is our guess, not
    documented. Everything after it comes from lxml, never from string formatting.
    """
    document: bytes = etree.tostring(root, encoding="UTF-8", xml_declaration=False)
    return _XML_DECLARATION + document
