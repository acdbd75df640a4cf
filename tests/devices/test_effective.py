"""Loading a device's configuration context and resolving it, against the database."""

from collections.abc import Callable

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from dls.config import Settings
from dls.db.engine import session_factory
from dls.db.reads import PointReads
from dls.devices.effective import (
    load_context,
    resolve_documents,
    resolve_settings,
    settings_sources,
)
from dls.devices.inheritance import MASK, Level, SettingsLayer
from dls.devices.layers import decode_layer, encode_layer, masked_layer_json, purpose
from dls.devices.models import Device, Scope, SettingsDocument
from dls.secretbox import SecretBox, load_secret_box
from dls.tenancy import service
from dls.tenancy.models import Role, TenantKind

pytestmark = pytest.mark.db

HOSTILE = "p<&>\"' äö"


def _layer(**data: object) -> SettingsLayer:
    return SettingsLayer.model_validate(data)


def _document(box: SecretBox, scope: Scope, key: str, layer: SettingsLayer, rev: int = 1):  # type: ignore[no-untyped-def]
    return SettingsDocument(
        scope=scope,
        scope_key=key,
        revision=rev,
        data=encode_layer(layer, box, purpose(scope.value, key)),
    )


async def test_one_query_context_and_provenance(
    engine: AsyncEngine, make_settings: Callable[..., Settings]
) -> None:
    box = load_secret_box(make_settings())
    sessions = session_factory(engine)
    async with sessions() as session, session.begin():
        tenant = await service.create_tenant(
            session, kind=TenantKind.CUSTOMER, name="C", country="DE", eu=True
        )
        user = await service.create_user(
            session,
            tenant,
            username="ann",
            display_name="Ann",
            email=None,
            password_hash=None,
            role=Role.USER,
            paid=False,
        )
        device = Device(
            mac="001565aabbcc",
            vendor="yealink",
            model="T46U",
            tenant_id=tenant.tenant_id,
            user_id=user.id,
            user_line=2,
        )
        session.add(device)
        await session.flush()
        session.add_all(
            [
                _document(
                    box,
                    Scope.SYSTEM,
                    "system",
                    _layer(time={"ntp_servers": ["pool.ntp.org"], "time_zone": "UTC"}),
                ),
                _document(
                    box,
                    Scope.TENANT,
                    tenant.tenant_id,
                    _layer(
                        line_defaults={"registrar": "sip.example.net"},
                        time={"time_zone": "Europe/Berlin"},
                    ),
                    rev=7,
                ),
                _document(
                    box,
                    Scope.USER,
                    str(user.id),
                    _layer(lines={1: {"sip_user": "201", "password": HOSTILE}}),
                ),
            ]
        )

    async with sessions() as session:
        context = await load_context(session, mac="001565aabbcc")
    assert context is not None
    assert context.revision == "1.7.0.1.0-1"
    resolution = resolve_settings(context, box)
    line = resolution.settings.lines[2]  # the user's line 1 sits on line key 2
    assert line.sip_user == "201" and line.registrar == "sip.example.net"
    assert line.password is not None and line.password.get_secret_value() == HOSTILE
    assert resolution.settings.time.time_zone == "Europe/Berlin"
    assert resolution.provenance[("time", "time_zone")].level is Level.TENANT
    assert resolution.provenance[("time", "ntp_servers")].level is Level.SYSTEM

    masked = resolve_settings(context, None)
    assert masked.settings.lines[2].password.get_secret_value() == MASK  # type: ignore[union-attr]

    async with sessions() as session:
        assert await load_context(session, mac="001565aabbcd") is None

    # The device paths read the same documents as plain columns, outside a session or in
    # one, and resolve them to the same settings under the same revision.
    reads = PointReads(engine)
    try:
        async with sessions() as session:
            found = [
                await settings_sources(reads, context.device.id),
                await settings_sources(session, context.device.id),
            ]
        for sources in found:
            assert sources is not None
            assert (sources.mac, sources.user_line) == ("001565aabbcc", 2)
            assert sources.revision == context.revision
            assert sources.documents[2] is None and sources.documents[4] is None
            plain = resolve_documents(sources.documents, sources.user_line, box)
            assert plain.settings == resolution.settings
            assert plain.provenance == resolution.provenance
        assert await settings_sources(reads, context.device.id + 1000) is None
    finally:
        await reads.dispose()


def test_layer_round_trip_keeps_null_absent_and_masked_secrets(
    make_settings: Callable[..., Settings],
) -> None:
    box = load_secret_box(make_settings())
    bound = purpose("device", "1")
    stored = encode_layer(
        _layer(admin_password="s3cret", vlan=None, lines={1: {"password": HOSTILE}}), box, bound
    )
    assert "s3cret" not in str(stored) and HOSTILE not in str(stored)
    assert stored["vlan"] is None and "time" not in stored
    shown = masked_layer_json(stored)
    assert shown["admin_password"] == MASK and shown["lines"]["1"]["password"] == MASK
    # Sending the masked document back keeps the secrets; a new value replaces one.
    again = encode_layer(_layer(**{**shown, "admin_password": "n3w"}), box, bound, previous=stored)
    assert again["lines"]["1"]["password"] == stored["lines"]["1"]["password"]
    layer = decode_layer(again, box, bound)
    assert layer.admin_password.get_secret_value() == "n3w"  # type: ignore[union-attr]
    assert layer.lines[1].password.get_secret_value() == HOSTILE  # type: ignore[index,union-attr]
    with pytest.raises(ValueError, match="masked secret"):
        encode_layer(_layer(admin_password=MASK), box, bound)


def test_shared_documents_are_decoded_once_per_revision(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two phones of a tenant rendered after its change decode the tenant's document
    once; its next revision is decoded anew; users' documents are never kept."""
    from dls.devices import effective

    box = load_secret_box(Settings(certs_dir=tmp_path_factory.mktemp("certs")))
    decoded: list[tuple[str, str]] = []
    real = effective.decode_layer

    def counted(data: dict[str, object], box: SecretBox | None, bound_to: str) -> SettingsLayer:
        decoded.append((bound_to, str(data.get("language"))))
        return real(data, box, bound_to)

    monkeypatch.setattr(effective, "decode_layer", counted)
    tenant = _document(
        box,
        Scope.TENANT,
        "t1",
        _layer(
            language="de", admin_password=HOSTILE, line_defaults={"registrar": "sip.example.net"}
        ),
    )
    users = [_document(box, Scope.USER, key, _layer(lines={1: {"sip_user": key}})) for key in "12"]
    layers = effective.DecodedLayers((Scope.SYSTEM, Scope.TENANT, Scope.GROUP), limit=1)

    def settings(tenant: SettingsDocument, user: SettingsDocument):  # type: ignore[no-untyped-def]
        return resolve_documents((None, tenant, None, user, None), 1, box, layers).settings

    first, second = settings(tenant, users[0]), settings(tenant, users[1])
    assert [s.lines[1].sip_user for s in (first, second)] == ["1", "2"]
    assert second.admin_password is not None
    assert second.admin_password.get_secret_value() == HOSTILE
    assert decoded == [
        ("settings:tenant:t1", "de"),
        ("settings:user:1", "None"),
        ("settings:user:2", "None"),
    ]
    changed = _document(
        box,
        Scope.TENANT,
        "t1",
        _layer(language="fr", line_defaults={"registrar": "sip.example.net"}),
        rev=2,
    )
    assert settings(changed, users[0]).language == "fr"
    assert settings(tenant, users[0]).language == "de"  # beyond the limit: decoded again
    assert [entry for entry in decoded[3:] if "tenant" in entry[0]] == [
        ("settings:tenant:t1", "fr"),
        ("settings:tenant:t1", "de"),
    ]
