"""Secrets at rest: AES-256-GCM with a key from ``DLS_SECRET_KEY`` or ``certs/secret.key``.

Ciphertexts carry a key id (the first 8 hex digits of the key's SHA-256), so a value
encrypted under another key fails loudly instead of decrypting to garbage, and a key
rotation can tell which rows it has already re-encrypted. The associated data binds each
ciphertext to its purpose (e.g. ``device:42:digest``), so a value copied from one row or
column to another does not decrypt.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from dls.config import KEY_FORMAT, ConfigError, Settings, is_secret_key

__all__ = [
    "KEY_FILE",
    "PENDING_KEY_FILE",
    "SecretBox",
    "SecretError",
    "generate_key_file",
    "key_id_of",
    "load_secret_box",
    "read_key_file",
]

KEY_FILE = "secret.key"
# The new key while ``dls secrets rotate-key`` runs; left behind if it did not finish.
PENDING_KEY_FILE = KEY_FILE + ".new"
PREFIX = "v1"


class SecretError(Exception):
    """A ciphertext that cannot be opened with the configured key."""


class SecretBox:
    __slots__ = ("_aead", "_key", "key_id")

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError("the secret key must be 32 bytes (AES-256)")
        self._aead = AESGCM(key)
        self._key = key
        self.key_id = hashlib.sha256(key).hexdigest()[:8]

    def derive(self, label: str) -> bytes:
        """A 32-byte key for another purpose (e.g. signing nonces), the same on every
        instance that shares the secret key, and useless for opening ciphertexts."""
        return hmac.new(self._key, b"dls-derive:" + label.encode(), hashlib.sha256).digest()

    def encrypt(self, plaintext: str, purpose: str) -> str:
        nonce = secrets.token_bytes(12)
        sealed = self._aead.encrypt(nonce, plaintext.encode(), purpose.encode())
        return f"{PREFIX}:{self.key_id}:{_b64(nonce + sealed)}"

    def decrypt(self, token: str, purpose: str) -> str:
        try:
            version, key_id, payload = token.split(":", 2)
            raw = base64.urlsafe_b64decode(payload.encode())
        except (ValueError, binascii.Error):
            raise SecretError("not a dls ciphertext") from None
        if version != PREFIX:
            raise SecretError(f"unknown ciphertext version {version}")
        if key_id != self.key_id:
            raise SecretError(f"encrypted under key {key_id}, configured key is {self.key_id}")
        try:
            return self._aead.decrypt(raw[:12], raw[12:], purpose.encode()).decode()
        except InvalidTag:
            raise SecretError("ciphertext does not open (tampered, or another purpose)") from None

    def owns(self, token: str) -> bool:
        return token.startswith(f"{PREFIX}:{self.key_id}:")


def key_id_of(token: str) -> str | None:
    """The id of the key a ciphertext was made with; None if it is no dls ciphertext."""
    version, _, rest = token.partition(":")
    key_id, _, _ = rest.partition(":")
    return key_id if version == PREFIX and key_id else None


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode()


def load_secret_box(settings: Settings) -> SecretBox:
    """The configured key; creates ``certs/secret.key`` (0600) on first use if none is set."""
    if settings.secret_key is not None:  # checked when the settings were read
        return SecretBox(base64.b64decode(settings.secret_key.get_secret_value().strip()))
    path = settings.certs_dir / KEY_FILE
    if not path.exists():
        generate_key_file(path)
    return read_key_file(path)


def read_key_file(path: Path) -> SecretBox:
    """The key in ``path``; a missing or damaged file is a configuration error (one line,
    exit code 2), not a traceback."""
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path}: not found") from None
    if not is_secret_key(text):
        raise ConfigError(f"{path}: {KEY_FORMAT}")
    return SecretBox(base64.b64decode(text.strip()))


def generate_key_file(path: Path) -> bytes:
    """Write a new random key, mode 0600, never over an existing file; return the key."""
    key = secrets.token_bytes(32)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(base64.b64encode(key) + b"\n")
    return key
