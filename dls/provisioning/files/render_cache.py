"""Rendered device files kept per worker, keyed by what they were rendered from.

The key holds the device, the file, the configuration revision and the firmware offer:
an admin change or a new offer is a new key, so nothing is ever invalidated, and a poll
whose revision is unchanged sends the bytes (and ETag) it sent before.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass

__all__ = ["Failed", "RenderCache", "Rendered"]


@dataclass(frozen=True, slots=True)
class Rendered:
    body: bytes
    etag: str
    revision: str  # the configuration revision it was rendered from ("" for common files)


@dataclass(frozen=True, slots=True)
class Failed:
    """A rendering that failed (settings that do not resolve, a secret that does not
    decrypt): it fails again for the same key until the revision changes, so it is kept
    like a success. A misconfigured tenant's phones then cost a lookup per poll, not a
    read, a decryption and a log line each (1,000 phones polled at a third of the rate)."""


class RenderCache:
    """Rendered files, and failed renderings, by (device, file, revision): LRU, bounded."""

    def __init__(self, max_entries: int) -> None:
        self._entries: OrderedDict[tuple[object, ...], Rendered | Failed] = OrderedDict()
        self._max = max_entries

    def get(self, key: tuple[object, ...]) -> Rendered | Failed | None:
        found = self._entries.get(key)
        if found is not None:
            self._entries.move_to_end(key)
        return found

    def put(self, key: tuple[object, ...], body: bytes, revision: str = "") -> Rendered:
        rendered = Rendered(body, '"' + hashlib.sha256(body).hexdigest()[:32] + '"', revision)
        self._keep(key, rendered)
        return rendered

    def failed(self, key: tuple[object, ...]) -> None:
        self._keep(key, _FAILED)

    def _keep(self, key: tuple[object, ...], entry: Rendered | Failed) -> None:
        self._entries[key] = entry
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)


_FAILED = Failed()
