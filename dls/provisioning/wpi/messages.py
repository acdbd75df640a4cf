"""Typed WPI messages: ``WorkpointMessage`` in from the phone, ``DLSMessage`` out to it.

Two functions cross the boundary: :func:`parse_request` turns request bytes into a
:class:`WorkpointMessage`, :func:`build_response` turns a :class:`DLSMessage` into bytes.
Everything above this module works with these dataclasses only, never with lxml.

Names follow the Developer's Guide (reference §4-§5, §10-§12): the enum values are the
spec's spellings, and each answer class is named after its ``Action``. Parsing is
namespace-aware and strict about what the guide defines (one ``Message``, a ``nonce``, a
``ReasonForContact``), and lenient about what it does not: unknown elements and
attributes are ignored, so a firmware that adds one does not lose its session.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import ClassVar, TypeVar

from lxml import etree

from dls.provisioning.wpi.items import (
    FACTORY_RESET_PASSWORD,
    FILE_ACTION,
    FILE_HTTPS_BASE_URL,
    FILE_PRIORITY,
    FILE_SW_TYPE,
    FILE_SW_VERSION,
    FILE_TYPE,
    RESTART_PASSWORD,
    RESTART_TYPE,
    RESTART_TYPE_FACTORY_RESET,
    SEND_SOLICITED,
    Item,
    ItemKey,
)
from dls.provisioning.wpi.xml import WpiFormatError, parse_document, serialise_document

__all__ = [
    "NAMESPACE",
    "Action",
    "CleanUp",
    "Command",
    "DLSMessage",
    "DeploymentFile",
    "FileAction",
    "FileDeployment",
    "FilePriority",
    "FileType",
    "Fragment",
    "GetNextFragment",
    "ReadAllItems",
    "ReadItems",
    "ReasonForContact",
    "ReplyStatus",
    "Restart",
    "SoftwareDeployment",
    "WorkpointMessage",
    "WriteItems",
    "build_response",
    "parse_request",
]

NAMESPACE = "http://www.siemens.com/DLS"  # [DG p.33]
_XSI = "http://www.w3.org/2001/XMLSchema-instance"

MAX_NONCE_LENGTH = 256  # characters; phones send 32 hex digits [NODE], our bound
MAX_NAME_LENGTH = 256  # characters of an item name, our bound
MAX_REASON_LENGTH = 64  # characters of ReasonForContact text; the longest spec value is 17
_INDEX = re.compile(r"[0-9]{1,6}")  # ASCII digits only: int() would also take other scripts
_MAX_ITEMS = re.compile(r"-?[0-9]{1,9}")
_E = TypeVar("_E", bound=StrEnum)


def _tag(local: str) -> str:
    return f"{{{NAMESPACE}}}{local}"


_WORKPOINT_MESSAGE = _tag("WorkpointMessage")
_DLS_MESSAGE = _tag("DLSMessage")
_MESSAGE = _tag("Message")
_REASON_FOR_CONTACT = _tag("ReasonForContact")
_ACTION = _tag("Action")
_ITEM_LIST = _tag("ItemList")
_ITEM = _tag("Item")


class ReasonForContact(StrEnum):
    """Why the phone opened this message [DG p.28]."""

    START_UP = "start-up"
    SOLICITED = "solicited"
    REPLY_TO = "reply-to"
    LOCAL_CHANGES = "local-changes"
    INVENTORY_CHANGES = "inventory-changes"
    STATUS = "status"
    CLEAN_UP = "clean-up"


class Action(StrEnum):
    """What the DLS asks of the phone [DG p.30/70]."""

    READ_ALL_ITEMS = "ReadAllItems"
    READ_ITEMS = "ReadItems"
    WRITE_ITEMS = "WriteItems"
    RESTART = "Restart"
    FILE_DEPLOYMENT = "FileDeployment"
    SOFTWARE_DEPLOYMENT = "SoftwareDeployment"
    CLEAN_UP = "CleanUp"
    GET_NEXT_FRAGMENT = "GetNextFragment"


class ReplyStatus(StrEnum):
    """The ``status`` attribute of a ``reply-to`` [DG p.62]."""

    ACCEPTED = "accepted"
    BUSY = "busy"
    FAILED = "failed"


class Fragment(StrEnum):
    """The ``fragment`` attribute of a phone message [DG p.70]."""

    NEXT = "next"
    FINAL = "final"


class FileType(StrEnum):
    """``file-type`` values [DG p.53-57]; the guide's list "includes" these, so it may grow."""

    RINGTONE = "RINGTONE"
    LOGO = "LOGO"
    SCREENSAVER = "SCREENSAVER"
    MOH = "MOH"
    PIC = "PIC"
    LDAP = "LDAP"
    APP = "APP"  # firmware, SoftwareDeployment only


class FileAction(StrEnum):
    DEPLOY = "deploy"
    DELETE = "delete"


class FilePriority(StrEnum):
    """``file-priority``: ``immediate`` installs at once, ``normal`` waits until idle [DG p.56]."""

    IMMEDIATE = "immediate"
    NORMAL = "normal"


@dataclass(frozen=True, slots=True)
class WorkpointMessage:
    """One phone message. ``reason`` is ``None`` when ``reason_text`` is not a spec value."""

    nonce: str
    reason: ReasonForContact | None
    reason_text: str
    action: Action | None = None  # ReasonForContact@action: which DLS action is answered
    status: ReplyStatus | None = None
    fragment: Fragment | None = None
    max_items: int | None = None  # -1 means unlimited
    items: tuple[Item, ...] = ()

    def value(self, name: str, index: int | None = None) -> str | None:
        """The value of the first item called ``name`` (with ``index``), if reported."""
        for item in self.items:
            if item.name == name and item.index == index and not item.failed:
                return item.value
        return None


# --- answers: one class per Action ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReadAllItems:
    """Every item except certificates."""

    action: ClassVar[Action] = Action.READ_ALL_ITEMS


@dataclass(frozen=True, slots=True)
class ReadItems:
    keys: tuple[ItemKey, ...]
    action: ClassVar[Action] = Action.READ_ITEMS

    def __post_init__(self) -> None:
        if not self.keys:
            raise ValueError("ReadItems needs at least one item")


@dataclass(frozen=True, slots=True)
class WriteItems:
    items: tuple[Item, ...]
    action: ClassVar[Action] = Action.WRITE_ITEMS

    def __post_init__(self) -> None:
        if not self.items:
            raise ValueError("WriteItems needs at least one item")


@dataclass(frozen=True, slots=True)
class Restart:
    """A reboot; with ``factory_reset`` the phone also wipes its settings [DG p.51]."""

    factory_reset: bool = False
    action: ClassVar[Action] = Action.RESTART


@dataclass(frozen=True, slots=True)
class DeploymentFile:
    url: str  # the whole URL goes into file-https-base-url, as DLSir does
    file_type: FileType
    file_action: FileAction = FileAction.DEPLOY


@dataclass(frozen=True, slots=True)
class FileDeployment:
    files: tuple[DeploymentFile, ...]
    action: ClassVar[Action] = Action.FILE_DEPLOYMENT

    def __post_init__(self) -> None:
        if not self.files:
            raise ValueError("FileDeployment needs at least one file")


@dataclass(frozen=True, slots=True)
class SoftwareDeployment:
    url: str
    software_version: str  # dotted, e.g. "3.5.16.0" for V3 R5.16.0 [DG p.56, NODE]
    software_type: str = "Siemens SIP"
    # Our default, not the phone's (which is immediate): never reboot a phone mid-call.
    priority: FilePriority = FilePriority.NORMAL
    action: ClassVar[Action] = Action.SOFTWARE_DEPLOYMENT


@dataclass(frozen=True, slots=True)
class CleanUp:
    """End of the interaction; ``send_solicited`` asks a busy phone to call back [DG p.74]."""

    send_solicited: bool = False
    action: ClassVar[Action] = Action.CLEAN_UP


@dataclass(frozen=True, slots=True)
class GetNextFragment:
    action: ClassVar[Action] = Action.GET_NEXT_FRAGMENT


Command = (
    ReadAllItems
    | ReadItems
    | WriteItems
    | Restart
    | FileDeployment
    | SoftwareDeployment
    | CleanUp
    | GetNextFragment
)


@dataclass(frozen=True, slots=True)
class DLSMessage:
    """One answer: the ``nonce`` echoes the phone message being answered [DG p.28/33]."""

    nonce: str
    command: Command


# --- parsing --------------------------------------------------------------------------


def parse_request(body: bytes) -> WorkpointMessage:
    """Parse a phone's request body; any defect raises :class:`WpiFormatError`."""
    root = parse_document(body)
    if root.tag != _WORKPOINT_MESSAGE:
        raise WpiFormatError("root element is not WorkpointMessage")
    message = _one_child(root, _MESSAGE, "Message")
    nonce = message.get("nonce")
    if not nonce or not nonce.strip():
        raise WpiFormatError("Message has no nonce")
    if len(nonce) > MAX_NONCE_LENGTH:
        raise WpiFormatError("nonce too long")
    reason_element = _one_child(message, _REASON_FOR_CONTACT, "ReasonForContact")
    reason_text = _text(reason_element).strip()
    if len(reason_text) > MAX_REASON_LENGTH:
        raise WpiFormatError("ReasonForContact too long")
    item_lists = message.findall(_ITEM_LIST)
    if len(item_lists) > 1:
        raise WpiFormatError("more than one ItemList")
    return WorkpointMessage(
        nonce=nonce,
        reason=_enum(ReasonForContact, reason_text, None),
        reason_text=reason_text,
        action=_attribute_enum(reason_element, "action", Action),
        status=_attribute_enum(reason_element, "status", ReplyStatus),
        fragment=_attribute_enum(message, "fragment", Fragment),
        max_items=_max_items(message.get("maxItems")),
        items=_items(item_lists[0]) if item_lists else (),
    )


def _one_child(parent: etree._Element, tag: str, name: str) -> etree._Element:
    children = parent.findall(tag)
    if len(children) != 1:
        raise WpiFormatError(f"expected exactly one {name}")
    return children[0]


def _text(element: etree._Element) -> str:
    if len(element):
        raise WpiFormatError("unexpected child element")
    return element.text or ""


def _enum(kind: type[_E], value: str, default: _E | None) -> _E | None:
    try:
        return kind(value)
    except ValueError:
        return default


def _attribute_enum(element: etree._Element, attribute: str, kind: type[_E]) -> _E | None:
    value = element.get(attribute)
    if value is None:
        return None
    parsed = _enum(kind, value.strip(), None)
    if parsed is None:
        raise WpiFormatError(f"unknown {attribute} value")
    return parsed


def _max_items(value: str | None) -> int | None:
    if value is None:
        return None
    if not _MAX_ITEMS.fullmatch(value.strip()):
        raise WpiFormatError("maxItems is not an integer")
    return int(value)


def _items(item_list: etree._Element) -> tuple[Item, ...]:
    items = []
    for element in item_list.iterchildren(_ITEM):
        name = element.get("name")
        if not name:
            raise WpiFormatError("Item has no name")
        if len(name) > MAX_NAME_LENGTH:
            raise WpiFormatError("Item name too long")
        index = element.get("index")
        if index is not None and not _INDEX.fullmatch(index.strip()):
            raise WpiFormatError("Item index is not a small integer")
        items.append(
            Item(
                name=name,
                value=_text(element),
                index=None if index is None else int(index),
                # Only "failed" is documented [DG p.81-82]; other values are ignored.
                failed=element.get("status") == "failed",
            )
        )
    return tuple(items)


# --- building -------------------------------------------------------------------------


def build_response(message: DLSMessage) -> bytes:
    """Render a ``DLSMessage`` as UTF-8 bytes.

    Raises ``ValueError`` if a value holds characters XML cannot carry (control
    characters): such a setting must be refused where it is entered, not sent.
    """
    root = etree.Element(_DLS_MESSAGE, nsmap={None: NAMESPACE, "xsi": _XSI})
    # The guide's examples carry this exact (non-pair) value [DG p.33/35]; phones ignore it.
    root.set(f"{{{_XSI}}}schemaLocation", NAMESPACE)
    body = etree.SubElement(root, _MESSAGE, nonce=message.nonce)
    etree.SubElement(body, _ACTION).text = message.command.action.value
    items = _command_items(message.command)
    if items:
        item_list = etree.SubElement(body, _ITEM_LIST)
        for item in items:
            element = etree.SubElement(item_list, _ITEM, name=item.name)
            if item.index is not None:
                element.set("index", str(item.index))
            if item.value:
                element.text = item.value
    return serialise_document(root)


def _command_items(command: Command) -> list[Item]:
    match command:
        case WriteItems(items=items):
            return list(items)
        case ReadItems(keys=keys):
            # Our guess: the guide shows no ReadItems body; we send the names, values empty.
            return [Item(key.name, "", key.index) for key in keys]
        case Restart(factory_reset=True):
            return [
                Item(RESTART_TYPE, RESTART_TYPE_FACTORY_RESET),
                Item(RESTART_PASSWORD, FACTORY_RESET_PASSWORD),
            ]
        case CleanUp(send_solicited=True):
            return [Item(SEND_SOLICITED, "true")]
        case FileDeployment(files=files):
            return [
                item
                for number, file in enumerate(files, start=1)
                for item in (
                    Item(FILE_HTTPS_BASE_URL, file.url, number),
                    Item(FILE_TYPE, file.file_type.value, number),
                    Item(FILE_ACTION, file.file_action.value, number),
                )
            ]
        case SoftwareDeployment():
            return [
                Item(FILE_HTTPS_BASE_URL, command.url),
                Item(FILE_TYPE, FileType.APP.value),
                Item(FILE_SW_TYPE, command.software_type),
                Item(FILE_SW_VERSION, command.software_version),
                Item(FILE_PRIORITY, command.priority.value),
            ]
        case _:
            return []
