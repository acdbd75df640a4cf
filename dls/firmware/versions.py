"""Comparing firmware versions as devices report them and as manifests write them.

A version is compared, never ordered: a rollout asks "does the device now run the target",
not "is it newer". Spellings differ between the places a version comes from:

- Unify phones report ``software-version`` as ``V3 R5.16.0`` while manifests and the WPI
  ``file-sw-version`` item write ``3.5.16.0`` (wpi-protocol.md §11), and the catalog pads
  the last group (``3.5.21.0000``);
- case and runs of blanks are noise (``83.V2.65.0`` vs ``83.v2.65.0``).

Everything else (Yealink ``108.86.0.90``, Gigaset ``83.V2.65.0``) must match as written,
so an imported version should be spelled the way the device reports it.
"""

from __future__ import annotations

import re

__all__ = ["MAX_VERSION_LENGTH", "same_version", "version_key"]

MAX_VERSION_LENGTH = 64  # the column width everywhere a version is stored

_UNIFY = re.compile(r"v(\d+)\s*r(\d+)\.(\d+)(?:\.(\d+))?(?:\s.*)?")
_DOTTED = re.compile(r"\d+(?:\.\d+)+")


def version_key(version: str) -> str:
    """The comparison form of ``version``: equal keys mean the same firmware."""
    # Bounded first: a phone's report can be any length, and int() refuses a number of
    # more than 4,300 digits (a ValueError in the middle of its interaction).
    text = " ".join(version[: 4 * MAX_VERSION_LENGTH].split()).casefold()
    unify = _UNIFY.fullmatch(text)
    if unify is not None:
        numbers = [group for group in unify.groups() if group is not None]
    elif _DOTTED.fullmatch(text):
        numbers = text.split(".")
    else:
        return text[:MAX_VERSION_LENGTH]
    # int() drops the padding: 3.5.21.0000 is 3.5.21.0.
    return ".".join(str(int(number)) for number in numbers)[:MAX_VERSION_LENGTH]


def same_version(first: str | None, second: str | None) -> bool:
    if first is None or second is None:
        return False
    return version_key(first) == version_key(second)
