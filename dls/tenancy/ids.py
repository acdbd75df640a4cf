"""Identifier formats: server-generated Tenant IDs and partner (Global One) IDs."""

from __future__ import annotations

import re
import secrets

__all__ = ["PARTNER_ID_PATTERN", "new_tenant_id", "usable_partner_id"]

TENANT_ID_PATTERN = re.compile(r"^[1-9][0-9]{11}$")

# The real Global One ID format is not public; our guess is upper-case ASCII letters and
# digits, 6 to 20 of them. Anything else (lower case, spaces, look-alike Unicode letters)
# is refused at input, so a look-alike can never be stored and later "match".
PARTNER_ID_PATTERN = re.compile(r"^[A-Z0-9]{6,20}$")


def new_tenant_id() -> str:
    """12 random digits, never starting with 0 (so it survives spreadsheets as a number)."""
    return str(secrets.randbelow(9 * 10**11) + 10**11)


def usable_partner_id(value: str | None) -> str | None:
    """The ID if it can take part in a match at all, else None.

    Stored IDs were validated at input, but a match must not depend on that alone: NULL,
    empty, blank or malformed IDs never match anything, not even each other.
    """
    if value is None or not PARTNER_ID_PATTERN.fullmatch(value):
        return None
    return value
