"""Key rotation re-encrypts every secret and leaves the database readable."""

import base64
from collections.abc import Callable

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from dls.config import ConfigError, Settings
from dls.db.engine import session_factory
from dls.db.types import utcnow
from dls.devices.inheritance import SettingsLayer
from dls.devices.layers import decode_layer, encode_layer, purpose
from dls.devices.models import Device, Scope, SettingsDocument
from dls.devices.registry import digest_purpose
from dls.devices.unify import DeploymentPin, pin_purpose
from dls.rotation import forget_unopenable, rotate_key_file, stored_key_id
from dls.secretbox import KEY_FILE, SecretBox, load_secret_box
from dls.tenancy import service
from dls.tenancy.models import Role, TenantKind

pytestmark = pytest.mark.db


async def _device_with_digest(session: AsyncSession, box: SecretBox) -> Device:
    """A customer's phone with a Digest password encrypted under ``box``."""
    tenant = await service.create_tenant(
        session, kind=TenantKind.CUSTOMER, name="C", country="DE", eu=False
    )
    device = Device(mac="001565aabbcc", vendor="yealink", model="T46U", tenant_id=tenant.tenant_id)
    session.add(device)
    await session.flush()
    device.digest_password = box.encrypt("digest-pw", digest_purpose(device.id))
    return device


async def test_rotation_reencrypts_digests_and_settings(
    engine: AsyncEngine, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings()
    old = load_secret_box(settings)
    sessions = session_factory(engine)
    bound = purpose("tenant", "t")
    async with sessions() as session, session.begin():
        await _device_with_digest(session, old)
        layer = SettingsLayer.model_validate(
            {"admin_password": "adm<&>", "lines": {1: {"sip_user": "201", "password": "line-pw"}}}
        )
        session.add(
            SettingsDocument(
                scope=Scope.TENANT, scope_key="t", data=encode_layer(layer, old, bound)
            )
        )

    old_id, new_id, count = await rotate_key_file(engine, settings.certs_dir)
    assert (old_id, count) == (old.key_id, 3)
    new = load_secret_box(settings)
    assert new.key_id == new_id != old_id
    backup = settings.certs_dir / (KEY_FILE + ".old")
    assert SecretBox(base64.b64decode(backup.read_bytes().strip())).key_id == old_id

    async with sessions() as session:
        device = (await session.scalars(select(Device))).one()
        document = (await session.scalars(select(SettingsDocument))).one()
    assert device.digest_password is not None
    assert new.decrypt(device.digest_password, digest_purpose(device.id)) == "digest-pw"
    decoded = decode_layer(document.data, new, bound)
    assert decoded.admin_password.get_secret_value() == "adm<&>"  # type: ignore[union-attr]
    assert decoded.lines[1].password.get_secret_value() == "line-pw"  # type: ignore[index,union-attr]


async def test_an_unfinished_rotation_is_reported(
    engine: AsyncEngine, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings()
    load_secret_box(settings)
    (settings.certs_dir / (KEY_FILE + ".new")).write_text("x")
    with pytest.raises(RuntimeError, match="did not finish"):
        await rotate_key_file(engine, settings.certs_dir)


@pytest.mark.parametrize("content", [None, b"damaged\n"])
async def test_a_missing_or_damaged_key_file_is_reported_and_nothing_changes(
    engine: AsyncEngine, make_settings: Callable[..., Settings], content: bytes | None
) -> None:
    """One line from ``dls secrets rotate-key`` (it was a traceback), and no new key."""
    settings = make_settings()
    settings.certs_dir.mkdir(parents=True, exist_ok=True)
    current = settings.certs_dir / KEY_FILE
    if content is not None:
        current.write_bytes(content)
    expected = "not found" if content is None else "must be 32 random bytes in base64"
    with pytest.raises(ConfigError, match=f"^{current}: {expected}"):
        await rotate_key_file(engine, settings.certs_dir)
    assert sorted(path.name for path in settings.certs_dir.iterdir()) == (
        [] if content is None else [KEY_FILE]
    )


async def test_the_key_the_stored_secrets_need_is_found_in_a_document_or_a_device(
    engine: AsyncEngine, make_settings: Callable[..., Settings]
) -> None:
    """What ``dls serve`` checks its key against before it starts (on both databases:
    the documents are searched as JSON text)."""
    box = load_secret_box(make_settings())
    sessions = session_factory(engine)
    async with sessions() as session:
        assert await stored_key_id(session) is None
    layer = SettingsLayer.model_validate({"lines": {2: {"password": "line-pw"}}})
    async with sessions() as session, session.begin():
        session.add(SettingsDocument(scope=Scope.SYSTEM, scope_key="-", data={}))
        session.add(
            SettingsDocument(
                scope=Scope.TENANT, scope_key="t", data=encode_layer(layer, box, "tenant:t")
            )
        )
    async with sessions() as session:
        assert await stored_key_id(session) == box.key_id
    other = SecretBox(b"\x01" * 32)
    async with sessions() as session, session.begin():
        await _device_with_digest(session, other)
    async with sessions() as session:
        assert await stored_key_id(session) == other.key_id  # a device's is looked at first


async def test_a_deployment_pin_alone_names_the_key_and_is_forgotten_with_it(
    engine: AsyncEngine, make_settings: Callable[..., Settings]
) -> None:
    """A Unify-only installation: its deployment PINs may be its only secrets."""
    lost = SecretBox(b"\x02" * 32)
    sessions = session_factory(engine)
    async with sessions() as session, session.begin():
        tenant = await service.create_tenant(
            session, kind=TenantKind.CUSTOMER, name="C", country="DE", eu=False
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
        session.add(
            DeploymentPin(
                user_id=user.id,
                tenant_id=tenant.tenant_id,
                pin_ciphertext=lost.encrypt("12345678", pin_purpose(user.id)),
                lookup_hash="0" * 64,
                expires_at=utcnow(),
            )
        )
    async with sessions() as session:
        assert await stored_key_id(session) == lost.key_id
    async with sessions() as session, session.begin():
        counts = await forget_unopenable(session, load_secret_box(make_settings()))
    assert counts == {"device Digest passwords": 0, "settings values": 0, "deployment PINs": 1}
    async with sessions() as session:
        assert await stored_key_id(session) is None
        assert (await session.scalars(select(DeploymentPin))).all() == []
