"""A device with everything its configuration depends on, loaded in one indexed query.

The device row, its tenant, and the five settings documents (system, tenant, group, user,
device) by outer joins on unique keys: as ORM objects for the admin API
(``load_context``), or as plain columns for the device paths, which render on a cache miss
and need only the documents and the device's line offset (``settings_sources``: a Core
row, a tenth of the ORM load's cost, which a boot storm of first configurations pays per
phone). The configuration revision is made of the documents' revisions and the device's
own, so it changes whenever anything the rendered files depend on changes, and costs no
write.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import (
    ColumnElement,
    Select,
    String,
    and_,
    bindparam,
    cast,
    func,
    literal,
    select,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from dls.db.reads import Reader
from dls.devices.inheritance import Level, Resolution, SettingsLayer, resolve
from dls.devices.layers import decode_layer, purpose
from dls.devices.models import Device, Scope, SettingsDocument
from dls.secretbox import SecretBox
from dls.tenancy.models import Tenant

__all__ = [
    "SCOPES",
    "SYSTEM_KEY",
    "DecodedLayers",
    "DeviceContext",
    "DocumentRow",
    "config_revision",
    "document_columns",
    "document_rows",
    "join_documents",
    "load_context",
    "resolve_documents",
    "resolve_settings",
    "revision_column",
    "settings_sources",
]

SYSTEM_KEY = "system"
_LEVELS = (Level.SYSTEM, Level.TENANT, Level.GROUP, Level.USER, Level.DEVICE)
# The order of a device's five documents wherever they stand together, least specific first.
SCOPES = (Scope.SYSTEM, Scope.TENANT, Scope.GROUP, Scope.USER, Scope.DEVICE)


@dataclass(frozen=True, slots=True)
class DeviceContext:
    device: Device
    tenant: Tenant
    documents: tuple[SettingsDocument | None, ...]  # system, tenant, group, user, device

    @property
    def revision(self) -> str:
        """e.g. ``3.7.0.2.1-4``: document revisions by level, then the device row's."""
        return _revision(self.documents, self.device.revision)


class StoredLayer(Protocol):
    """A settings document as resolution reads it: an ORM row or a ``DocumentRow``."""

    @property
    def scope_key(self) -> str: ...
    @property
    def revision(self) -> int: ...
    @property
    def data(self) -> dict[str, Any]: ...


@dataclass(frozen=True, slots=True)
class DocumentRow:
    scope_key: str
    revision: int
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class SettingsSources:
    """What a device's rendered configuration is made of, as plain values."""

    mac: str
    user_line: int
    device_revision: int
    documents: tuple[DocumentRow | None, ...]  # system, tenant, group, user, device

    @property
    def revision(self) -> str:
        return _revision(self.documents, self.device_revision)


def config_revision(documents: Sequence[int | None], device: int) -> str:
    """The revision string of a device whose documents (system to device) have these
    revisions (None: no document) and whose own row has revision ``device``."""
    parts = ".".join(str(revision or 0) for revision in documents)
    return f"{parts}-{device}"


def revision_column(docs: Sequence[Any]) -> ColumnElement[str]:
    """``config_revision`` computed by the database, over the aliases ``join_documents``
    gave: to select or compare a page of devices' revisions in one query."""
    text = String()
    revision: ColumnElement[str] = cast(func.coalesce(docs[0].revision, 0), text)
    for doc in docs[1:]:
        revision = revision + literal(".", text) + cast(func.coalesce(doc.revision, 0), text)
    return revision + literal("-", text) + cast(Device.revision, text)


def _revision(documents: Sequence[StoredLayer | None], device: int) -> str:
    return config_revision([doc.revision if doc else None for doc in documents], device)


def join_documents(statement: Select[Any], name: str) -> tuple[Select[Any], list[Any]]:
    """``statement`` (over Device) outer-joined to the five settings documents the device
    inherits from, system to device, each by the unique (scope, key) index; and the five
    aliases, to select from."""
    docs = [aliased(SettingsDocument, name=f"{name}_{scope.value}") for scope in SCOPES]
    keys = (
        literal(SYSTEM_KEY),
        Device.tenant_id,
        Device.group_id,
        Device.user_id,
        Device.id,
    )
    for doc, scope, key in zip(docs, SCOPES, keys, strict=True):
        # Keys are stored as text; the cast keeps the join on the unique (scope, key) index.
        statement = statement.outerjoin(
            doc,
            and_(doc.scope == scope, doc.scope_key == key.cast(SettingsDocument.scope_key.type)),
        )
    return statement, docs


def _statement():  # type: ignore[no-untyped-def]
    base = select(Device).join(Tenant, Tenant.tenant_id == Device.tenant_id)
    base, docs = join_documents(base, "doc")
    return base.add_columns(Tenant, *docs)


# Built once with bound parameters: SQLAlchemy memoises a statement's cache key on the
# object, so a poll pays for executing the statement, not for building it.
_BY_MAC = _statement().where(Device.mac == bindparam("mac"))
_BY_ID = _statement().where(Device.id == bindparam("device_id"))


def document_columns(docs: Sequence[Any]) -> list[Any]:
    """The columns a ``DocumentRow`` is made of, for each alias ``join_documents`` gave:
    select them after a device's own columns and read them back with ``document_rows``."""
    return [column for doc in docs for column in (doc.scope_key, doc.revision, doc.data)]


def document_rows(values: Sequence[Any]) -> tuple[DocumentRow | None, ...]:
    """The five documents (None: none at that level) from ``document_columns``' values."""
    return tuple(
        DocumentRow(*values[at : at + 3]) if values[at] is not None else None
        for at in range(0, len(values), 3)
    )


def _sources_statement():  # type: ignore[no-untyped-def]
    base, docs = join_documents(select(Device), "src")
    return base.with_only_columns(
        Device.mac,
        Device.user_line,
        Device.revision,
        *document_columns(docs),
        maintain_column_froms=True,
    ).where(Device.id == bindparam("device_id"))


_SOURCES = _sources_statement()


async def settings_sources(reader: Reader, device_id: int) -> SettingsSources | None:
    """The device's documents as plain columns, on the device path's own connection or
    in a session's transaction."""
    for row in await reader.execute(_SOURCES, {"device_id": device_id}):
        mac, user_line, device_revision, *columns = row
        return SettingsSources(mac, user_line, device_revision, document_rows(columns))
    return None


async def load_context(
    session: AsyncSession, *, mac: str | None = None, device_id: int | None = None
) -> DeviceContext | None:
    if mac is not None:
        result = await session.execute(_BY_MAC, {"mac": mac})
    elif device_id is not None:
        result = await session.execute(_BY_ID, {"device_id": device_id})
    else:
        raise ValueError("mac or device_id")
    row = result.one_or_none()
    if row is None:
        return None
    device, tenant, *documents = row
    return DeviceContext(device, tenant, tuple(documents))


def resolve_settings(context: DeviceContext, box: SecretBox | None) -> Resolution:
    """The device's effective settings; with ``box`` None, secrets read as the mask."""
    return resolve_documents(context.documents, context.device.user_line, box)


class DecodedLayers:
    """Settings documents decoded once, by scope, key and revision.

    A revision names one content (the version counter: every change of a document's data
    is a new revision), so a decoded layer stays right for as long as its revision is
    current. Decoding was 40 % of resolving a device's settings, and the documents above
    the user are shared by every device of a tenant or group: after a tenant's change a
    boot storm re-renders its whole fleet, and each rendering decoded the same tenant
    document again. ``scopes`` says which levels to keep; at most ``limit`` layers are
    kept, the least recently used dropped first. Decrypted secrets are held as the
    render cache holds them, in the rendered files.
    """

    def __init__(self, scopes: Collection[Scope] = tuple(Scope), limit: int = 0) -> None:
        self._scopes = frozenset(scopes)
        self._limit = limit  # 0: no limit (one computation's memo)
        self._layers: OrderedDict[tuple[Scope, str, int], SettingsLayer] = OrderedDict()

    def layer(
        self, scope: Scope, document: StoredLayer, decode: Callable[[], SettingsLayer]
    ) -> SettingsLayer:
        if scope not in self._scopes:
            return decode()
        key = (scope, document.scope_key, document.revision)
        layer = self._layers.get(key)
        if layer is not None:
            self._layers.move_to_end(key)
            return layer
        layer = self._layers[key] = decode()
        if self._limit and len(self._layers) > self._limit:
            self._layers.popitem(last=False)
        return layer


def resolve_documents(
    documents: Sequence[StoredLayer | None],
    user_line: int,
    box: SecretBox | None,
    decoded: DecodedLayers | None = None,
) -> Resolution:
    """Settings from the documents, system to device; with ``box`` None, secrets read as
    the mask. ``decoded``: layers decoded before (with the same ``box``), and a place to
    keep these.

    The user's lines are moved to start at the device's ``user_line``: a user's line 1 is
    line 2 of a device where the user sits on the second line key.
    """
    layers: list[tuple[Level, SettingsLayer]] = []
    for level, scope, document in zip(_LEVELS, SCOPES, documents, strict=True):
        if document is None:
            continue

        def decode(document: StoredLayer = document, scope: Scope = scope) -> SettingsLayer:
            return decode_layer(document.data, box, purpose(scope.value, document.scope_key))

        layer = decode() if decoded is None else decoded.layer(scope, document, decode)
        if scope is Scope.USER and user_line != 1 and layer.lines:
            shift = user_line - 1
            layer = layer.model_copy(
                update={"lines": {index + shift: line for index, line in layer.lines.items()}}
            )
        layers.append((level, layer))
    return resolve(layers)
