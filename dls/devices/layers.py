"""Settings documents in the database: sparse layers with their secrets encrypted.

A layer is stored as the JSON of what the admin set (``exclude_unset``), so "absent"
(inherit) and ``null`` (clear) survive the round trip. Every secret becomes
``{"$secret": <ciphertext>}``, bound to its document; reading a layer back for display
shows ``MASK`` instead, and writing ``MASK`` back keeps the stored secret, so an admin
console can round-trip a document it was never allowed to see in full.
"""

from __future__ import annotations

from typing import Any

from pydantic import SecretStr

from dls.devices.inheritance import MASK, SettingsLayer
from dls.secretbox import SecretBox

__all__ = ["MASK", "decode_layer", "encode_layer", "masked_layer_json", "purpose"]

SECRET_MARKER = "$secret"  # noqa: S105 - the JSON key that wraps a ciphertext


def purpose(scope: str, scope_key: str) -> str:
    return f"settings:{scope}:{scope_key}"


def encode_layer(
    layer: SettingsLayer, box: SecretBox, bound_to: str, previous: dict[str, Any] | None = None
) -> dict[str, Any]:
    """JSON for the database. A secret given as ``MASK`` keeps the previous ciphertext."""
    return _encode(layer.model_dump(exclude_unset=True), box, bound_to, previous or {})


def _encode(node: Any, box: SecretBox, bound_to: str, previous: Any) -> Any:
    if isinstance(node, SecretStr):
        plain = node.get_secret_value()
        if plain == MASK:
            if isinstance(previous, dict) and SECRET_MARKER in previous:
                return previous
            raise ValueError("a masked secret was sent back but none is stored")
        return {SECRET_MARKER: box.encrypt(plain, bound_to)}
    if isinstance(node, dict):
        before = previous if isinstance(previous, dict) else {}
        return {
            str(key): _encode(value, box, bound_to, before.get(str(key)))
            for key, value in node.items()
        }
    if isinstance(node, tuple | list):
        return [_encode(value, box, bound_to, None) for value in node]
    if hasattr(node, "value") and not isinstance(node, str | int | float | bool):
        return node.value  # enums
    return node


def decode_layer(data: dict[str, Any], box: SecretBox | None, bound_to: str) -> SettingsLayer:
    """The layer with secrets decrypted, or shown as ``MASK`` when ``box`` is None."""
    return SettingsLayer.model_validate(_decode(data, box, bound_to))


def masked_layer_json(data: dict[str, Any]) -> dict[str, Any]:
    """What the admin API shows of a stored layer: everything, secrets as ``MASK``."""
    result = _decode(data, None, "")
    assert isinstance(result, dict)
    return result


def _decode(node: Any, box: SecretBox | None, bound_to: str) -> Any:
    if isinstance(node, dict):
        if set(node) == {SECRET_MARKER}:
            return MASK if box is None else box.decrypt(node[SECRET_MARKER], bound_to)
        return {key: _decode(value, box, bound_to) for key, value in node.items()}
    if isinstance(node, list):
        return [_decode(value, box, bound_to) for value in node]
    return node
