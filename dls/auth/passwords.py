"""Admin and user passwords: Argon2id, memory-hard, in PHC string format.

Parameters are OWASP's minimum for Argon2id (19 MiB, 2 passes, 1 lane): about 30 ms here,
so a login costs little while an offline attack on a stolen table costs a lot. They are
stored in each hash, so raising them later needs no migration.
"""

from __future__ import annotations

import asyncio
import secrets

from cryptography.exceptions import InvalidKey
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

__all__ = ["generate_password", "hash_in_thread", "hash_password", "verify_password"]

MEMORY_KIB = 19456
PASSES = 2
LANES = 1

# Verifying a password against this burns the same time as a real user's hash, so a
# login for an unknown user name takes as long as one for a known one.
_DUMMY_HASH: str | None = None


def hash_password(password: str) -> str:
    kdf = Argon2id(
        salt=secrets.token_bytes(16),
        length=32,
        iterations=PASSES,
        lanes=LANES,
        memory_cost=MEMORY_KIB,
    )
    return kdf.derive_phc_encoded(password.encode())


async def hash_in_thread(password: str) -> str:
    """``hash_password`` off the event loop: Argon2id takes tens of milliseconds and
    releases the GIL, so the loop serves other requests meanwhile."""
    return await asyncio.to_thread(hash_password, password)


def verify_password(password: str, encoded: str | None) -> bool:
    global _DUMMY_HASH
    if encoded is None:
        _DUMMY_HASH = _DUMMY_HASH or hash_password(secrets.token_urlsafe(16))
        encoded, password = _DUMMY_HASH, password + "\0"
    try:
        Argon2id.verify_phc_encoded(password.encode(), encoded)
    except (InvalidKey, ValueError):
        return False
    return True


def generate_password() -> str:
    """A password to print once: 20 URL-safe characters, about 120 bits."""
    return secrets.token_urlsafe(15)
