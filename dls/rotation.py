"""Re-encrypting every secret at rest under a new key (``dls secrets rotate-key``).

The new key is written next to the old one first, then every ciphertext is re-encrypted
in one transaction, then the key files are swapped, keeping the old key as
``secret.key.old``. Should the process die between the commit and the swap, the database
is under the key in ``secret.key.new``: the command says so, and moving that file to
``secret.key`` completes the rotation. Servers hold the key in memory: stop them first.
"""

from __future__ import annotations

import json
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from sqlalchemy import String, cast, select
from sqlalchemy.ext.asyncio import AsyncSession

from dls.db.engine import WRITER
from dls.devices.layers import SECRET_MARKER, purpose
from dls.devices.models import Device, SettingsDocument
from dls.devices.registry import digest_purpose
from dls.devices.unify import rotate_pins
from dls.secretbox import KEY_FILE, SecretBox, generate_key_file, key_id_of, read_key_file

__all__ = ["ROTATORS", "rotate_key_file", "stored_key_id"]

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
    if isinstance(node, dict):
        if set(node) == {SECRET_MARKER}:
            plain = old.decrypt(node[SECRET_MARKER], bound)
            return 1, {SECRET_MARKER: new.encrypt(plain, bound)}
        total, result = 0, {}
        for key, value in node.items():
            changed, result[key] = _reencrypt(value, old, new, bound)
            total += changed
        return total, result
    if isinstance(node, list):
        pairs = [_reencrypt(value, old, new, bound) for value in node]
        return sum(c for c, _ in pairs), [v for _, v in pairs]
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
    return key_id_of(token) if token else None


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


async def rotate_key_file(
    session_factory: Callable[[], AsyncSession], certs_dir: Path
) -> tuple[str, str, int]:
    """Rotate; returns (old key id, new key id, number of secrets re-encrypted)."""
    current = certs_dir / KEY_FILE
    pending = certs_dir / (KEY_FILE + ".new")
    if pending.exists():
        raise RuntimeError(
            f"{pending} exists: an earlier rotation did not finish. If the database was "
            f"re-encrypted, move it to {current}; otherwise delete it and run again."
        )
    old = read_key_file(current)
    new = SecretBox(generate_key_file(pending))
    total = 0
    async with session_factory() as session, session.begin():
        # All or nothing, and never failing half-way on a running server's commit.
        await session.connection(execution_options=WRITER)
        for rotator in ROTATORS:
            total += await rotator(session, old, new)
    backup = certs_dir / (KEY_FILE + ".old")
    os.replace(current, backup)
    os.replace(pending, current)
    return old.key_id, new.key_id, total
