"""Download tokens: bound to a device and an image, expiring, unforgeable."""

from __future__ import annotations

import base64

import pytest

from dls.firmware.tokens import TOKEN_LENGTH, DownloadGrant, DownloadTokens

KEY = bytes(range(32))
MAC = "001565aabbcc"
TTL = 3600
NOW = 1_800_000_000.0


@pytest.fixture
def tokens() -> DownloadTokens:
    return DownloadTokens(KEY, TTL)


def test_a_token_grants_its_device_and_image(tokens: DownloadTokens) -> None:
    token = tokens.issue(42, MAC, 7, NOW)
    assert len(token) == TOKEN_LENGTH
    assert token.isascii() and "/" not in token and "=" not in token
    grant = tokens.verify(token, NOW)
    assert grant == DownloadGrant(42, MAC, 7, tokens.expiry(NOW))


def test_expiry_is_bucketed_between_one_and_two_ttl(tokens: DownloadTokens) -> None:
    for offset in (0.0, 1.0, TTL - 1.0):
        issued = NOW - NOW % TTL + offset
        lifetime = tokens.expiry(issued) - issued
        assert TTL < lifetime <= 2 * TTL
    # Everything issued in one bucket is the same token: renderings can be cached.
    start = NOW - NOW % TTL
    assert tokens.issue(1, MAC, 1, start) == tokens.issue(1, MAC, 1, start + TTL - 1)
    assert tokens.issue(1, MAC, 1, start) != tokens.issue(1, MAC, 1, start + TTL)


def test_an_expired_token_is_refused(tokens: DownloadTokens) -> None:
    token = tokens.issue(42, MAC, 7, NOW)
    expires = tokens.expiry(NOW)
    assert tokens.verify(token, expires - 1) is not None
    assert tokens.verify(token, expires) is None
    old = tokens.issue_until(42, MAC, 7, int(NOW) - 1)
    assert tokens.verify(old, NOW) is None


def test_any_changed_bit_is_refused(tokens: DownloadTokens) -> None:
    token = tokens.issue(42, MAC, 7, NOW)
    raw = bytearray(base64.urlsafe_b64decode(token + "="))
    for index in range(len(raw)):
        for bit in (0x01, 0x80):
            tampered = bytearray(raw)
            tampered[index] ^= bit
            text = base64.urlsafe_b64encode(bytes(tampered)).rstrip(b"=").decode()
            assert tokens.verify(text, NOW) is None, (index, bit)


def test_another_key_refuses(tokens: DownloadTokens) -> None:
    token = DownloadTokens(bytes(32), TTL).issue(42, MAC, 7, NOW)
    assert tokens.verify(token, NOW) is None


@pytest.mark.parametrize(
    "token",
    ["", "x", "a" * TOKEN_LENGTH, "!" * TOKEN_LENGTH, "a" * (TOKEN_LENGTH + 1), "..", "%2e"],
)
def test_garbage_is_refused(tokens: DownloadTokens, token: str) -> None:
    assert tokens.verify(token, NOW) is None


def test_ids_out_of_range_are_not_issued(tokens: DownloadTokens) -> None:
    with pytest.raises(ValueError, match="out of range"):
        tokens.issue(2**32, MAC, 1, NOW)
    with pytest.raises(ValueError, match="out of range"):
        tokens.issue(1, MAC, 0, NOW)


def test_weak_keys_and_ttls_are_refused() -> None:
    with pytest.raises(ValueError, match="128 bits"):
        DownloadTokens(b"short", TTL)
    with pytest.raises(ValueError, match="ttl"):
        DownloadTokens(KEY, 0)
