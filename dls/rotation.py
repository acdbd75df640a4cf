"""Re-encrypting every secret at rest under a new key (``dls secrets rotate-key``).

The new key is written next to the old one first, then every ciphertext is re-encrypted
in one transaction, then the key files are swapped, keeping the old key as
``secret.key.old``. Should the process die between the commit and the swap, the database
is under the key in ``secret.key.new``: the command says so, and moving that file to
``secret.key`` completes the rotation. Servers hold the key in memory: the rotation runs
alone (``dls.db.serving``), refused while any server serves from the database, and no
server starts until the key files are swapped.
"""

from __future__ import annotations

import json
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from sqlalchemy import String, cast, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from dls import audit
from dls.db.engine import WRITER, session_factory
from dls.db.serving import alone
from dls.devices.layers import SECRET_MARKER, purpose
from dls.devices.models import Device, SettingsDocument
from dls.devices.registry import digest_purpose
from dls.devices.unify import DeploymentPin, rotate_pins
from dls.secretbox import (
    KEY_FILE,
    PENDING_KEY_FILE,
    SecretBox,
    generate_key_file,
    key_id_of,
    read_key_file,
)

__all__ = ["ROTATORS", "forget_unopenable", "rotate_key_file", "stored_key_id"]

Rotator = Callable[[AsyncSession, SecretBox, SecretBox], Awaitable[int]]


async def _device_digests(session: AsyncSession, old: SecretBox, new: SecretBox) -> int:
    count = 0
    for device in await session.scalars(select(Device).where(Device.digest_password.is_not(None))):
        assert device.digest_password is not None
        plain = old.decrypt(device.digest_password, digest_purpose(device.id))
        device.digest_password = new.encrypt(plain, digest_purpose(device.id))
        count += 1
    return count


async def _settings_documents(session: AsyncSession, old: SecretBox, new: SecretBox) -> int:
    count = 0
    for document in await session.scalars(select(SettingsDocument)):
        bound = purpose(document.scope.value, document.scope_key)
        changed, data = _reencrypt(document.data, old, new, bound)
        if changed:
            document.data = data
            count += changed
    return count


def _reencrypt(node: Any, old: SecretBox, new: SecretBox, bound: str) -> tuple[int, Any]:
    return _map_secrets(node, lambda token: new.encrypt(old.decrypt(token, bound), bound))


_REMOVED = object()


def _map_secrets(node: Any, replace: Callable[[str], str | None]) -> tuple[int, Any]:
    """``node`` with each secret's ciphertext passed through ``replace``, and how many it
    changed. A secret ``replace`` maps to None is removed: unset at that level, so the
    level above it applies."""
    if isinstance(node, dict):
        if set(node) == {SECRET_MARKER}:
            token = str(node[SECRET_MARKER])
            replaced = replace(token)
            kept = _REMOVED if replaced is None else {SECRET_MARKER: replaced}
            return int(replaced != token), kept
        mapped = {key: _map_secrets(value, replace) for key, value in node.items()}
        total = sum(changed for changed, _ in mapped.values())
        return total, {key: value for key, (_, value) in mapped.items() if value is not _REMOVED}
    if isinstance(node, list):
        pairs = [_map_secrets(value, replace) for value in node]
        total = sum(changed for changed, _ in pairs)
        return total, [value for _, value in pairs if value is not _REMOVED]
    return 0, node


# Every table holding ciphertexts contributes one rotator.
ROTATORS: list[Rotator] = [_device_digests, _settings_documents, rotate_pins]


async def stored_key_id(session: AsyncSession) -> str | None:
    """The id of the key a secret in the database is encrypted under, if it holds any:
    the key that must be configured to open them. One device's Digest password, or else
    one settings document's secret, found by a text search rather than a walk through
    every document."""
    token = await session.scalar(
        select(Device.digest_password).where(Device.digest_password.is_not(None)).limit(1)
    )
    if token is None:
        text = cast(SettingsDocument.data, String)
        found = await session.scalar(
            select(text).where(text.contains(f'"{SECRET_MARKER}"')).limit(1)
        )
        token = _first_secret(json.loads(found)) if found else None
    if token is None:
        token = await session.scalar(select(DeploymentPin.pin_ciphertext).limit(1))
    return key_id_of(token) if token else None


async def forget_unopenable(session: AsyncSession, box: SecretBox) -> dict[str, int]:
    """Remove every secret ``box`` cannot open, for an operator whose key is lost for
    good (``dls secrets forget-lost``): the server then starts, and admins set those
    secrets anew. A settings document that loses a value gets a new revision, so its
    phones fetch it again; each object changed is audited as an operator action."""
    counts = {"device Digest passwords": 0, "settings values": 0, "deployment PINs": 0}
    devices = select(Device).where(Device.digest_password.is_not(None))
    for device in await session.scalars(devices):
        if device.digest_password is not None and not box.owns(device.digest_password):
            device.digest_password = None
            _forgotten(session, device.tenant_id, "device", device.id)
            counts["device Digest passwords"] += 1
    for document in await session.scalars(select(SettingsDocument)):
        removed, data = _map_secrets(document.data, lambda t: t if box.owns(t) else None)
        if removed:
            document.data = data
            document.revision += 1
            key = f"{document.scope.value}:{document.scope_key}"
            _forgotten(session, None, "settings_document", key)
            counts["settings values"] += removed
    for pin in await session.scalars(select(DeploymentPin)):
        if not box.owns(pin.pin_ciphertext):
            await session.delete(pin)
            _forgotten(session, None, "deployment_pin", pin.user_id)
            counts["deployment PINs"] += 1
    return counts


def _forgotten(
    session: AsyncSession, tenant_id: str | None, object_type: str, object_id: str | int
) -> None:
    audit.record(
        session,
        actor_user_id=None,
        actor_tenant_id=None,
        target_tenant_id=tenant_id,
        via=audit.Via.OPERATOR,
        action="secrets.forget_lost",
        object_type=object_type,
        object_id=object_id,
    )


def _first_secret(node: Any) -> str | None:
    if isinstance(node, dict):
        if set(node) == {SECRET_MARKER}:
            return str(node[SECRET_MARKER])
        node = list(node.values())
    if isinstance(node, list):
        for value in node:
            if (found := _first_secret(value)) is not None:
                return found
    return None


async def rotate_key_file(engine: AsyncEngine, certs_dir: Path) -> tuple[str, str, int]:
    """Rotate; returns (old key id, new key id, number of secrets re-encrypted). Raises
    ServersRunning, with nothing changed, while a server serves from the database."""
    current = certs_dir / KEY_FILE
    pending = certs_dir / PENDING_KEY_FILE
    if pending.exists():
        raise RuntimeError(
            f"{pending} exists: an earlier rotation did not finish. If the database was "
            f"re-encrypted, move it to {current}; otherwise delete it and run again."
        )
    old = read_key_file(current)
    async with alone(engine):
        new = SecretBox(generate_key_file(pending))
        total = 0
        async with session_factory(engine)() as session, session.begin():
            # All or nothing, and never failing half-way on another writer's commit.
            await session.connection(execution_options=WRITER)
            for rotator in ROTATORS:
                total += await rotator(session, old, new)
        backup = certs_dir / (KEY_FILE + ".old")
        os.replace(current, backup)
        os.replace(pending, current)
    return old.key_id, new.key_id, total
