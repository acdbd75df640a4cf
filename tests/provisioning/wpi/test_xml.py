"""The hardened wire layer: what it accepts, what it refuses, and why it refuses fast."""

from __future__ import annotations

import pytest
from lxml import etree

from dls.provisioning.wpi.xml import (
    MAX_BODY_BYTES,
    MAX_DEPTH,
    MAX_ELEMENTS,
    WpiFormatError,
    parse_document,
    serialise_document,
)

SIMPLE = b'<a xmlns="urn:x"><b n="1">text</b></a>'


def _reason(body: bytes) -> str:
    with pytest.raises(WpiFormatError) as caught:
        parse_document(body)
    return caught.value.reason


def test_parses_a_plain_document() -> None:
    root = parse_document(SIMPLE)
    assert root.tag == "{urn:x}a"
    assert root[0].get("n") == "1"
    assert root[0].text == "text"


@pytest.mark.parametrize(
    "declaration",
    [
        b'<?xml version="1.0" encoding="UTF-8"?>',
        b"<?xml version='1.0' encoding='utf-8'?>",
        b'<?xml version="1.0"?>',
        b"\xef\xbb\xbf",  # a UTF-8 byte order mark
        b'\xef\xbb\xbf<?xml version="1.0" encoding="UTF-8"?>',
    ],
)
def test_accepts_utf8_declarations(declaration: bytes) -> None:
    assert parse_document(declaration + SIMPLE).tag == "{urn:x}a"


def test_keeps_non_ascii_text() -> None:
    root = parse_document("<a>Müller · 電話</a>".encode())
    assert root.text == "Müller · 電話"


def test_drops_comments_and_processing_instructions() -> None:
    root = parse_document(b"<!-- c --><a><?pi x?><!-- c -->t<b/></a>")
    assert root.text == "t"
    assert [child.tag for child in root] == ["b"]


def test_cdata_becomes_text() -> None:
    assert parse_document(b"<a><![CDATA[<x>&]]></a>").text == "<x>&"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "empty body"),
        (b"  \r\n\t", "empty body"),
        (b"<a>" + b"x" * MAX_BODY_BYTES + b"</a>", "body too large"),
        (b'<!DOCTYPE a [<!ENTITY e "x">]><a>&e;</a>', "DOCTYPE and entity declarations"),
        (b'<!DOCTYPE a SYSTEM "http://127.0.0.1:9/a.dtd"><a/>', "DOCTYPE and entity declarations"),
        (b"<a><!ENTITY e 'x'></a>", "DOCTYPE and entity declarations"),
        (b"<a>&undefined;</a>", "malformed XML"),
        (b"<a><b></a>", "malformed XML"),
        (b"<a>", "malformed XML"),
        (b"not xml at all", "malformed XML"),
        (b"<a/><b/>", "malformed XML"),
        (b"<a>\x00</a>", "malformed XML"),
        (b"<a>\x01</a>", "malformed XML"),
        (b"<a>\xff</a>", "body is not valid UTF-8"),
        (b"<a>\xc3</a>", "body is not valid UTF-8"),
        (b"<a>\xed\xa0\x80</a>", "body is not valid UTF-8"),  # a UTF-16 surrogate
        ("<a>ü</a>".encode("utf-16"), "encoding must be UTF-8"),
        ("<a>ü</a>".encode("utf-16-be"), "encoding must be UTF-8"),
        ("<a>ü</a>".encode("utf-32"), "encoding must be UTF-8"),
        (b"<?xml version='1.0' encoding='ISO-8859-1'?><a>x</a>", "encoding must be"),
        (b'<?xml version="1.0" encoding="UTF-16"?><a>x</a>', "encoding must be UTF-8"),
        ("<a>Müller</a>".encode("latin-1"), "body is not valid UTF-8"),
        (b"<a" + b" x" * 10 + b">", "malformed XML"),
    ],
)
def test_refuses(body: bytes, reason: str) -> None:
    assert _reason(body).startswith(reason)


def test_depth_limit_is_ours_not_libxml2s() -> None:
    inside = b"<a>" * MAX_DEPTH + b"</a>" * MAX_DEPTH
    assert parse_document(inside).tag == "a"
    too_deep = b"<a>" * (MAX_DEPTH + 1) + b"</a>" * (MAX_DEPTH + 1)
    assert _reason(too_deep) == "elements nested too deep"


def test_libxml2_depth_limit_also_holds() -> None:
    deep = b"<a>" * 100_000 + b"</a>" * 100_000
    assert _reason(deep) == "malformed XML"


def test_element_count_limit() -> None:
    assert parse_document(b"<a>" + b"<b/>" * (MAX_ELEMENTS - 1) + b"</a>").tag == "a"
    assert _reason(b"<a>" + b"<b/>" * MAX_ELEMENTS + b"</a>") == "too many elements"


def test_body_exactly_at_the_limit_is_parsed() -> None:
    opening, closing = b"<a>", b"</a>"
    body = opening + b"x" * (MAX_BODY_BYTES - len(opening) - len(closing)) + closing
    assert len(body) == MAX_BODY_BYTES
    assert parse_document(body).text is not None


def test_error_is_a_value_error_with_a_fixed_reason() -> None:
    error = WpiFormatError("malformed XML")
    assert isinstance(error, ValueError)
    assert str(error) == error.reason == "malformed XML"


def test_reason_never_echoes_input() -> None:
    assert "secret" not in _reason(b"<a>secret")


def test_serialise_writes_a_declaration_and_utf8() -> None:
    root = etree.Element("{urn:x}a", nsmap={None: "urn:x"})
    etree.SubElement(root, "{urn:x}b").text = "Grüße <&>"
    body = serialise_document(root)
    assert body.startswith(b'<?xml version="1.0" encoding="UTF-8"?>\n<a xmlns="urn:x">')
    assert "Grüße &lt;&amp;&gt;".encode() in body
    assert parse_document(body)[0].text == "Grüße <&>"


def test_serialise_escapes_attribute_values() -> None:
    root = etree.Element("a", v='"><b/>')
    body = serialise_document(root)
    assert b"<b/>" not in body
    assert parse_document(body).get("v") == '"><b/>'
