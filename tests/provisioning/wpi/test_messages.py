"""Typed WPI messages: the reference's examples parse, every answer renders, bad input fails.

The request bodies are modelled on reference/wpi-protocol.md §7 (the Developer's Guide
examples); ``_answer`` reads our answers back the way a phone would, with plain lxml.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from dls.provisioning.wpi.items import Item, ItemKey
from dls.provisioning.wpi.messages import (
    MAX_NONCE_LENGTH,
    NAMESPACE,
    Action,
    CleanUp,
    DeploymentFile,
    DLSMessage,
    FileAction,
    FileDeployment,
    FilePriority,
    FileType,
    Fragment,
    GetNextFragment,
    ReadAllItems,
    ReadItems,
    ReasonForContact,
    ReplyStatus,
    Restart,
    SoftwareDeployment,
    WorkpointMessage,
    WriteItems,
    build_response,
    parse_request,
)
from dls.provisioning.wpi.xml import MAX_BODY_BYTES, WpiFormatError

NS = f'xmlns="{NAMESPACE}"'
XSI = (
    'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
    'xsi:schemaLocation="http://www.siemens.com/DLS"'
)

START_UP = f"""<?xml version="1.0" encoding="UTF-8"?>
<WorkpointMessage {NS} {XSI}>
  <Message nonce="7C1E04B9A2D35F8806E1C4B7D920A3F5">
    <ReasonForContact>start-up</ReasonForContact>
    <ItemList>
      <Item name="device-type">OpenStage 40</Item>
      <Item name="software-type">Siemens SIP</Item>
      <Item name="software-version">V3 R5.12.0</Item>
      <Item name="mac-addr">00:1A:E8:12:34:56</Item>
      <Item name="e164">4930123456</Item>
      <Item name="contact-me-uri">http://10.0.20.31:8085/contact_dls.html/ContactDLS</Item>
    </ItemList>
  </Message>
</WorkpointMessage>""".encode()


def _wrap(message: str) -> bytes:
    return f"<WorkpointMessage {NS}>{message}</WorkpointMessage>".encode()


def _answer(body: bytes) -> tuple[str, str, list[tuple[str, str | None, str]]]:
    """Read a DLSMessage as a phone would: (nonce, action, [(name, index, value)])."""
    assert body.startswith(b'<?xml version="1.0" encoding="UTF-8"?>')
    root = etree.fromstring(body)
    assert root.tag == f"{{{NAMESPACE}}}DLSMessage"
    assert root.get("{http://www.w3.org/2001/XMLSchema-instance}schemaLocation") == NAMESPACE
    (message,) = root
    assert message.tag == f"{{{NAMESPACE}}}Message"
    action, *rest = message
    assert action.tag == f"{{{NAMESPACE}}}Action"
    items = []
    if rest:
        (item_list,) = rest
        assert item_list.tag == f"{{{NAMESPACE}}}ItemList"
        for item in item_list:
            assert item.tag == f"{{{NAMESPACE}}}Item"
            items.append((item.get("name"), item.get("index"), item.text or ""))
    return message.get("nonce"), action.text, items


# --- parsing the reference's examples --------------------------------------------------


def test_start_up() -> None:
    message = parse_request(START_UP)
    assert message.nonce == "7C1E04B9A2D35F8806E1C4B7D920A3F5"
    assert message.reason is ReasonForContact.START_UP
    assert message.reason_text == "start-up"
    assert (message.action, message.status, message.fragment) == (None, None, None)
    assert message.items[0] == Item("device-type", "OpenStage 40")
    assert message.value("mac-addr") == "00:1A:E8:12:34:56"
    assert message.value("cloud-pin-value") is None
    assert len(message.items) == 6


def test_reply_to_read_all_items() -> None:
    message = parse_request(
        _wrap(
            '<Message nonce="B30F6E21C7A9458D1E02F4A6C8B3D571" maxItems="-1" fragment="final">'
            '<ReasonForContact action="ReadAllItems" status="accepted">reply-to</ReasonForContact>'
            '<ItemList><Item name="reg-addr">sip.example.net</Item>'
            '<Item name="sntp-addr">ntp.example.net</Item>'
            '<Item name="e164">4930123456</Item></ItemList></Message>'
        )
    )
    assert message.reason is ReasonForContact.REPLY_TO
    assert message.action is Action.READ_ALL_ITEMS
    assert message.status is ReplyStatus.ACCEPTED
    assert message.fragment is Fragment.FINAL
    assert message.max_items == -1
    assert [item.name for item in message.items] == ["reg-addr", "sntp-addr", "e164"]


def test_busy_reply_without_items() -> None:
    message = parse_request(
        _wrap(
            '<Message nonce="N"><ReasonForContact action="WriteItems" status="busy">'
            "reply-to</ReasonForContact></Message>"
        )
    )
    assert (message.action, message.status, message.items) == (
        Action.WRITE_ITEMS,
        ReplyStatus.BUSY,
        (),
    )


def test_failed_items_and_indexes() -> None:
    message = parse_request(
        _wrap(
            '<Message nonce="N"><ReasonForContact action="WriteItems" status="accepted">'
            "reply-to</ReasonForContact><ItemList>"
            '<Item name="no-such-item" status="failed"/>'
            '<Item name="function-key-def" index="12">1</Item>'
            '<Item name="x" status="ok">v</Item>'
            "</ItemList></Message>"
        )
    )
    assert message.items == (
        Item("no-such-item", "", None, failed=True),
        Item("function-key-def", "1", 12),
        Item("x", "v"),
    )
    assert message.items[1].key == ItemKey("function-key-def", 12)
    assert message.value("no-such-item") is None  # failed items have no value


def test_local_changes() -> None:
    message = parse_request(
        _wrap(
            '<Message nonce="N"><ReasonForContact>local-changes</ReasonForContact><ItemList>'
            '<Item name="mac-addr">00:1A:E8:12:34:56</Item>'
            '<Item name="configuration-changed-flag">true</Item>'
            '<Item name="configuration-attached-flag">true</Item>'
            '<Item name="configuration-attached-number">1</Item>'
            '<Item name="sntp-addr">192.168.1.1</Item></ItemList></Message>'
        )
    )
    assert message.reason is ReasonForContact.LOCAL_CHANGES
    assert message.value("sntp-addr") == "192.168.1.1"


def test_status_after_file_deployment() -> None:
    message = parse_request(
        _wrap(
            '<Message nonce="N"><ReasonForContact>status</ReasonForContact><ItemList>'
            '<Item name="file-deployment-name" index="1">logo-acme.png</Item>'
            '<Item name="file-deployment-type" index="1">LOGO</Item>'
            '<Item name="file-deployment-status" index="1">ok</Item>'
            "</ItemList></Message>"
        )
    )
    assert message.reason is ReasonForContact.STATUS
    assert message.value("file-deployment-status", 1) == "ok"


@pytest.mark.parametrize("reason", list(ReasonForContact))
def test_every_reason_parses(reason: ReasonForContact) -> None:
    body = _wrap(
        f'<Message nonce="N"><ReasonForContact>\n  {reason}\n</ReasonForContact></Message>'
    )
    assert parse_request(body).reason is reason


def test_unknown_reason_is_kept_for_the_engine() -> None:
    message = parse_request(
        _wrap('<Message nonce="N"><ReasonForContact>coffee-break</ReasonForContact></Message>')
    )
    assert message.reason is None
    assert message.reason_text == "coffee-break"


def test_next_fragment() -> None:
    message = parse_request(
        _wrap(
            '<Message nonce="N1" fragment="next"><ReasonForContact action="ReadAllItems" '
            'status="accepted">reply-to</ReasonForContact><ItemList><Item name="a">1</Item>'
            "</ItemList></Message>"
        )
    )
    assert message.fragment is Fragment.NEXT


def test_unknown_elements_and_attributes_are_ignored() -> None:
    message = parse_request(
        _wrap(
            '<Message nonce="N" extra="1"><Vendor/><ReasonForContact>solicited'
            '</ReasonForContact><ItemList><Item name="a" colour="red">1</Item><Note/>'
            "</ItemList></Message><Trailer/>"
        )
    )
    assert message.items == (Item("a", "1"),)


def test_item_values_keep_whitespace_and_markup_characters() -> None:
    message = parse_request(
        _wrap(
            '<Message nonce="N"><ReasonForContact>solicited</ReasonForContact><ItemList>'
            '<Item name="display-id-unicode">  Front &amp; Back &lt;1&gt; </Item>'
            '<Item name="empty"></Item></ItemList></Message>'
        )
    )
    assert message.items == (Item("display-id-unicode", "  Front & Back <1> "), Item("empty"))


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"<DLSMessage xmlns='http://www.siemens.com/DLS'/>", "root element is not Workpoint"),
        (b"<WorkpointMessage><Message nonce='N'/></WorkpointMessage>", "root element"),
        (_wrap(""), "expected exactly one Message"),
        (_wrap('<Message nonce="1"/><Message nonce="2"/>'), "expected exactly one Message"),
        (
            _wrap("<Message><ReasonForContact>start-up</ReasonForContact></Message>"),
            "Message has no nonce",
        ),
        (
            _wrap('<Message nonce=" "><ReasonForContact>x</ReasonForContact></Message>'),
            "Message has no nonce",
        ),
        (
            _wrap(f'<Message nonce="{"A" * (MAX_NONCE_LENGTH + 1)}"/>'),
            "nonce too long",
        ),
        (_wrap('<Message nonce="N"/>'), "expected exactly one ReasonForContact"),
        (
            _wrap(
                '<Message nonce="N"><ReasonForContact>start-up</ReasonForContact>'
                "<ReasonForContact>start-up</ReasonForContact></Message>"
            ),
            "expected exactly one ReasonForContact",
        ),
        (
            _wrap('<Message nonce="N"><ReasonForContact>x<b/></ReasonForContact></Message>'),
            "unexpected child element",
        ),
        (
            _wrap(f'<Message nonce="N"><ReasonForContact>{"x" * 65}</ReasonForContact></Message>'),
            "ReasonForContact too long",
        ),
        (
            _wrap(
                '<Message nonce="N"><ReasonForContact action="Dance">reply-to'
                "</ReasonForContact></Message>"
            ),
            "unknown action value",
        ),
        (
            _wrap(
                '<Message nonce="N"><ReasonForContact status="maybe">reply-to'
                "</ReasonForContact></Message>"
            ),
            "unknown status value",
        ),
        (
            _wrap(
                '<Message nonce="N" fragment="last"><ReasonForContact>reply-to'
                "</ReasonForContact></Message>"
            ),
            "unknown fragment value",
        ),
        (
            _wrap(
                '<Message nonce="N" maxItems="many"><ReasonForContact>reply-to'
                "</ReasonForContact></Message>"
            ),
            "maxItems is not an integer",
        ),
        (
            _wrap(
                '<Message nonce="N"><ReasonForContact>solicited</ReasonForContact>'
                "<ItemList/><ItemList/></Message>"
            ),
            "more than one ItemList",
        ),
        (
            _wrap(
                '<Message nonce="N"><ReasonForContact>solicited</ReasonForContact>'
                "<ItemList><Item>v</Item></ItemList></Message>"
            ),
            "Item has no name",
        ),
        (
            _wrap(
                '<Message nonce="N"><ReasonForContact>solicited</ReasonForContact>'
                f'<ItemList><Item name="{"n" * 300}">v</Item></ItemList></Message>'
            ),
            "Item name too long",
        ),
        (
            _wrap(
                '<Message nonce="N"><ReasonForContact>solicited</ReasonForContact>'
                '<ItemList><Item name="a" index="-1">v</Item></ItemList></Message>'
            ),
            "Item index",
        ),
        (
            _wrap(
                # An Arabic-Indic digit one: int() would take it, the protocol does not.
                '<Message nonce="N"><ReasonForContact>solicited</ReasonForContact>'
                '<ItemList><Item name="a" index="\u0661">v</Item></ItemList></Message>'
            ),
            "Item index",
        ),
        (
            _wrap(
                '<Message nonce="N"><ReasonForContact>solicited</ReasonForContact>'
                '<ItemList><Item name="a"><b/></Item></ItemList></Message>'
            ),
            "unexpected child element",
        ),
    ],
)
def test_refuses(body: bytes, reason: str) -> None:
    with pytest.raises(WpiFormatError) as caught:
        parse_request(body)
    assert caught.value.reason.startswith(reason)


# --- building answers ------------------------------------------------------------------


def test_clean_up_bytes_are_pinned() -> None:
    assert build_response(DLSMessage("7C1E", CleanUp())) == (
        b'<?xml version="1.0" encoding="UTF-8"?>\n'
        b'<DLSMessage xmlns="http://www.siemens.com/DLS" '
        b'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
        b'xsi:schemaLocation="http://www.siemens.com/DLS">'
        b'<Message nonce="7C1E"><Action>CleanUp</Action></Message></DLSMessage>'
    )


@pytest.mark.parametrize(
    ("command", "action", "items"),
    [
        (ReadAllItems(), "ReadAllItems", []),
        (GetNextFragment(), "GetNextFragment", []),
        (CleanUp(), "CleanUp", []),
        (CleanUp(send_solicited=True), "CleanUp", [("send-solicited", None, "true")]),
        (Restart(), "Restart", []),
        (
            Restart(factory_reset=True),
            "Restart",
            [("restart-type", None, "FactoryReset"), ("restart-password", None, "124816")],
        ),
        (
            ReadItems((ItemKey("sntp-addr"), ItemKey("dls-server-ca", 1))),
            "ReadItems",
            [("sntp-addr", None, ""), ("dls-server-ca", "1", "")],
        ),
        (
            WriteItems((Item("reg-addr", "sip.example.net"), Item("function-key-def", "1", 3))),
            "WriteItems",
            [("reg-addr", None, "sip.example.net"), ("function-key-def", "3", "1")],
        ),
        (
            FileDeployment(
                (
                    DeploymentFile("https://dls.example.net:18443/files/logo.png", FileType.LOGO),
                    DeploymentFile(
                        "https://dls.example.net:18443/files/ring.mp3",
                        FileType.RINGTONE,
                        FileAction.DELETE,
                    ),
                )
            ),
            "FileDeployment",
            [
                ("file-https-base-url", "1", "https://dls.example.net:18443/files/logo.png"),
                ("file-type", "1", "LOGO"),
                ("file-action", "1", "deploy"),
                ("file-https-base-url", "2", "https://dls.example.net:18443/files/ring.mp3"),
                ("file-type", "2", "RINGTONE"),
                ("file-action", "2", "delete"),
            ],
        ),
        (
            SoftwareDeployment(
                "https://dls.example.net:18443/fw/os40-sip-v3r5.16.0.img",
                "3.5.16.0",
                priority=FilePriority.IMMEDIATE,
            ),
            "SoftwareDeployment",
            [
                (
                    "file-https-base-url",
                    None,
                    "https://dls.example.net:18443/fw/os40-sip-v3r5.16.0.img",
                ),
                ("file-type", None, "APP"),
                ("file-sw-type", None, "Siemens SIP"),
                ("file-sw-version", None, "3.5.16.0"),
                ("file-priority", None, "immediate"),
            ],
        ),
    ],
)
def test_every_action_renders(
    command: object, action: str, items: list[tuple[str, str | None, str]]
) -> None:
    body = build_response(DLSMessage("B30F6E21C7A9458D1E02F4A6C8B3D571", command))  # type: ignore[arg-type]
    assert _answer(body) == ("B30F6E21C7A9458D1E02F4A6C8B3D571", action, items)


def test_every_action_has_a_command() -> None:
    actions = {
        ReadAllItems.action,
        ReadItems.action,
        WriteItems.action,
        Restart.action,
        FileDeployment.action,
        SoftwareDeployment.action,
        CleanUp.action,
        GetNextFragment.action,
    }
    assert actions == set(Action)


def test_software_deployment_defaults_to_normal_priority() -> None:
    _, _, items = _answer(build_response(DLSMessage("N", SoftwareDeployment("u", "1.4.9.0"))))
    assert ("file-priority", None, "normal") in items


def test_nonce_and_values_are_escaped_not_formatted() -> None:
    hostile = '"/><Action>Restart</Action><x a="'
    body = build_response(DLSMessage(hostile, WriteItems((Item("display-id", "</Item>&"),))))
    nonce, action, items = _answer(body)
    assert (nonce, action, items) == (hostile, "WriteItems", [("display-id", None, "</Item>&")])


def test_control_characters_are_refused_when_building() -> None:
    with pytest.raises(ValueError, match="XML compatible"):
        build_response(DLSMessage("N", WriteItems((Item("display-id", "a\x00b"),))))


@pytest.mark.parametrize(
    "make",
    [lambda: WriteItems(()), lambda: ReadItems(()), lambda: FileDeployment(())],
)
def test_empty_commands_are_refused(make: object) -> None:
    with pytest.raises(ValueError, match="at least one"):
        make()  # type: ignore[operator]


# --- round trips -----------------------------------------------------------------------

_xml_text = st.text(
    st.characters(
        codec="utf-8",
        exclude_categories=("Cs", "Cc"),
        exclude_characters="\ufffe\uffff",
    ),
    max_size=40,
)
_items = st.builds(
    Item,
    name=_xml_text.filter(bool),
    value=_xml_text,
    index=st.none() | st.integers(0, 999_999),
    failed=st.booleans(),
)
_messages = st.builds(
    WorkpointMessage,
    nonce=st.text("0123456789ABCDEF", min_size=1, max_size=32),
    reason=st.sampled_from(ReasonForContact),
    reason_text=st.just(""),
    action=st.none() | st.sampled_from(Action),
    status=st.none() | st.sampled_from(ReplyStatus),
    fragment=st.none() | st.sampled_from(Fragment),
    max_items=st.none() | st.integers(-1, 10_000),
    items=st.lists(_items, max_size=8).map(tuple),
)


def _encode(message: WorkpointMessage) -> bytes:
    """What a phone would send for ``message``, written with lxml."""
    root = etree.Element(f"{{{NAMESPACE}}}WorkpointMessage", nsmap={None: NAMESPACE})
    body = etree.SubElement(root, f"{{{NAMESPACE}}}Message", nonce=message.nonce)
    if message.fragment is not None:
        body.set("fragment", message.fragment)
    if message.max_items is not None:
        body.set("maxItems", str(message.max_items))
    reason = etree.SubElement(body, f"{{{NAMESPACE}}}ReasonForContact")
    reason.text = message.reason
    if message.action is not None:
        reason.set("action", message.action)
    if message.status is not None:
        reason.set("status", message.status)
    if message.items:
        item_list = etree.SubElement(body, f"{{{NAMESPACE}}}ItemList")
        for item in message.items:
            element = etree.SubElement(item_list, f"{{{NAMESPACE}}}Item", name=item.name)
            element.text = item.value
            if item.index is not None:
                element.set("index", str(item.index))
            if item.failed:
                element.set("status", "failed")
    document: bytes = etree.tostring(root, xml_declaration=True, encoding="UTF-8")
    return document


@given(_messages)
def test_requests_round_trip(message: WorkpointMessage) -> None:
    assert message.reason is not None
    expected = WorkpointMessage(
        nonce=message.nonce,
        reason=message.reason,
        reason_text=message.reason.value,
        action=message.action,
        status=message.status,
        fragment=message.fragment,
        max_items=message.max_items,
        items=message.items,
    )
    assert parse_request(_encode(message)) == expected


@given(
    nonce=st.text("0123456789ABCDEF", min_size=1, max_size=32),
    items=st.lists(_items, min_size=1, max_size=8),
)
def test_write_items_round_trip(nonce: str, items: list[Item]) -> None:
    sent = [Item(item.name, item.value, item.index) for item in items]
    _, action, rendered = _answer(build_response(DLSMessage(nonce, WriteItems(tuple(sent)))))
    assert action == "WriteItems"
    assert rendered == [
        (item.name, None if item.index is None else str(item.index), item.value) for item in sent
    ]


# --- hostile input: one error type, always, and fast -----------------------------------

_ENVELOPE = (
    '<?xml version="1.0" encoding="UTF-8"?>'
    f'<WorkpointMessage {NS}><Message nonce="7C1E04B9A2D35F8806E1C4B7D920A3F5">'
    "<ReasonForContact>start-up</ReasonForContact><ItemList>"
    '<Item name="mac-addr">00:1A:E8:12:34:56</Item>'
    '<Item name="display-id-unicode">{text}</Item>'
    "</ItemList></Message></WorkpointMessage>"
)
_VALID = _ENVELOPE.format(text="Müller 電話").encode()


@st.composite
def _billion_laughs(draw: st.DrawFn) -> bytes:
    levels = draw(st.integers(1, 12))
    fanout = draw(st.integers(2, 12))
    entities = ['<!ENTITY lol0 "lol">']
    for level in range(1, levels):
        entities.append(f'<!ENTITY lol{level} "{f"&lol{level - 1};" * fanout}">')
    inner = "".join(entities)
    body = _ENVELOPE.format(text=f"&lol{levels - 1};")
    return body.replace(
        "<WorkpointMessage", f"<!DOCTYPE WorkpointMessage [{inner}]><WorkpointMessage", 1
    ).encode()


@st.composite
def _external_entity(draw: st.DrawFn) -> bytes:
    url = draw(
        st.sampled_from(
            [
                "file:///etc/passwd",
                "file:///dev/zero",
                "http://127.0.0.1:9/secret",
                "http://169.254.169.254/latest/meta-data/",
                "https://dls.example.invalid/x.dtd",
            ]
        )
    )
    declaration = draw(
        st.sampled_from(
            [
                f'<!ENTITY xxe SYSTEM "{url}">',
                f'<!ENTITY xxe PUBLIC "-//X//Y" "{url}">',
                f'<!ENTITY % p SYSTEM "{url}"> %p;',
            ]
        )
    )
    doctype = draw(
        st.sampled_from(
            [
                f"<!DOCTYPE WorkpointMessage [{declaration}]>",
                f'<!DOCTYPE WorkpointMessage SYSTEM "{url}">',
            ]
        )
    )
    body = _ENVELOPE.format(text="&xxe;")
    return body.replace("<WorkpointMessage", doctype + "<WorkpointMessage", 1).encode()


@st.composite
def _deep_nesting(draw: st.DrawFn) -> bytes:
    depth = draw(st.integers(1, 200_000))
    inside_item = draw(st.booleans())
    nested = "<x>" * depth + "</x>" * depth
    if inside_item:
        return _ENVELOPE.format(text=nested).encode()
    return nested.encode()


@st.composite
def _huge_attribute(draw: st.DrawFn) -> bytes:
    size = draw(st.integers(MAX_NONCE_LENGTH + 1, 2 * MAX_BODY_BYTES))
    where = draw(st.sampled_from(["nonce", "name", "extra"]))
    filler = "A" * size
    body = _VALID.decode()
    if where == "nonce":
        body = body.replace("7C1E04B9A2D35F8806E1C4B7D920A3F5", filler, 1)
    elif where == "name":
        body = body.replace('name="mac-addr"', f'name="{filler}"', 1)
    else:  # an ignored attribute is fine in itself, so only one beyond the body limit
        body = body.replace("<Message ", f'<Message extra="{filler}{"A" * MAX_BODY_BYTES}" ', 1)
    return body.encode()


# Each pair: an encoding, and text it turns into bytes that are not valid UTF-8.
_FOREIGN = [
    ("utf-16", "Müller"),
    ("utf-16-le", "Müller"),
    ("utf-16-be", "Müller"),
    ("utf-32", "Müller"),
    ("utf-32-le", "Müller"),
    ("latin-1", "Müller"),
    ("cp1252", "Grüße"),
    ("cp437", "Grüße"),
    ("shift_jis", "電話"),
    ("euc-jp", "電話"),
    ("koi8-r", "Привет"),
    ("gb18030", "电话"),
]


@st.composite
def _wrong_encoding(draw: st.DrawFn) -> bytes:
    encoding, text = draw(st.sampled_from(_FOREIGN))
    declared = draw(st.sampled_from([None, encoding, "UTF-8"]))
    body = _ENVELOPE.format(text=text)
    if declared is None:
        body = body.replace('<?xml version="1.0" encoding="UTF-8"?>', "", 1)
    else:
        body = body.replace('encoding="UTF-8"', f'encoding="{declared}"', 1)
    return body.encode(encoding)


@st.composite
def _declared_foreign_ascii(draw: st.DrawFn) -> bytes:
    """Pure ASCII bytes, but declared in an encoding we do not speak (UTF-7 hides markup)."""
    declared = draw(st.sampled_from(["UTF-7", "ISO-8859-1", "US-ASCII", "EBCDIC-US", "UTF-16"]))
    return (
        _ENVELOPE.format(text="plain")
        .replace('encoding="UTF-8"', f'encoding="{declared}"')
        .encode()
    )


@st.composite
def _truncated(draw: st.DrawFn) -> bytes:
    return _VALID[: draw(st.integers(0, len(_VALID) - 1))]


_ATTACKS = st.one_of(
    _billion_laughs(),
    _external_entity(),
    _deep_nesting(),
    _huge_attribute(),
    _wrong_encoding(),
    _declared_foreign_ascii(),
    _truncated(),
)


@settings(max_examples=300, deadline=timedelta(seconds=2))
@given(_ATTACKS)
def test_attacks_raise_the_format_error(body: bytes) -> None:
    with pytest.raises(WpiFormatError):
        parse_request(body)


@st.composite
def _mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(_VALID)
    for _ in range(draw(st.integers(1, 8))):
        position = draw(st.integers(0, len(data) - 1))
        data[position] = draw(st.integers(0, 255))
    return bytes(data)


@settings(max_examples=300, deadline=timedelta(seconds=2))
@given(st.binary(max_size=4096) | _mutated())
def test_any_bytes_parse_or_raise_the_format_error(body: bytes) -> None:
    try:
        message = parse_request(body)
    except WpiFormatError:
        return
    assert isinstance(message, WorkpointMessage)


def test_valid_fixture_parses() -> None:
    assert parse_request(_VALID).value("display-id-unicode") == "Müller 電話"
