"""What the WPI handlers of one listener share: keys, the profile, limits and caches.

One :class:`WpiRuntime` per listener application (device and secure), built once when
the application is built. Everything in it is either immutable or a bounded per-process
structure; nothing a second worker would need lives here.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass, field

from aiohttp import web

from dls.devices.unify import KeyedHash, keyed_hash
from dls.provisioning.wpi.items import Item
from dls.provisioning.wpi.limits import Admission, KeyedRateLimit, RateLimit
from dls.provisioning.wpi.profile import UnifyProfile, load_profile
from dls.quiet import QuietLog
from dls.secretbox import SecretBox
from dls.services import Services

__all__ = [
    "INTERACTION_TTL",
    "MAX_ACTIVE_REQUESTS",
    "MAX_OPEN_INTERACTIONS",
    "SESSION_IDLE_TIMEOUT",
    "WPI",
    "DesiredCache",
    "WpiRuntime",
    "build_runtime",
]

log = logging.getLogger("dls.wpi")

SESSION_IDLE_TIMEOUT = 120  # seconds between two messages of one interaction, our bound
# Per process. A start-up interaction is three to five round trips of a few milliseconds
# each; 256 open ones keep a worker busy without letting a boot storm queue past what it
# finishes within the phones' own HTTP timeouts.
MAX_OPEN_INTERACTIONS = 256
MAX_ACTIVE_REQUESTS = 512  # WPI requests being worked on at once, per process
INTERACTION_TTL = 30.0  # seconds an interaction counts as open without its CleanUp here
MAX_CACHED_DEVICES = 4096  # desired-item sets kept per process

# Unknown phones are recorded at most this often: a flood of invented MACs must not
# become a flood of writes.
UNCLAIMED_WRITES_PER_SECOND = 20.0
UNCLAIMED_INTERVAL_PER_MAC = 300.0  # seconds between two records of the same MAC
PIN_CHECKS_PER_SECOND = 5.0  # deployment-PIN look-ups per process
DCMP_POLLS_PER_SECOND = 1.0  # per source address, burst 5
MAX_TRACKED_KEYS = 65_536  # addresses / MACs per keyed rate limit


class DesiredCache:
    """Desired items by (MAC, configuration revision, secrets?), least recently used out.

    Resolving settings decrypts secrets and validates five documents; a phone asks several
    times per interaction and the revision changes only when something it depends on does.
    """

    __slots__ = ("_entries", "max_entries")

    def __init__(self, max_entries: int = MAX_CACHED_DEVICES) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[tuple[str, str], tuple[Item, ...]] = OrderedDict()

    def get(self, mac: str, revision: str) -> tuple[Item, ...] | None:
        key = (mac, revision)
        found = self._entries.get(key)
        if found is not None:
            self._entries.move_to_end(key)
        return found

    def put(self, mac: str, revision: str, items: tuple[Item, ...]) -> None:
        self._entries[(mac, revision)] = items
        self._entries.move_to_end((mac, revision))
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)


@dataclass(slots=True)
class WpiRuntime:
    services: Services
    secure: bool  # the secure listener (client certificate required)
    box: SecretBox
    hasher: KeyedHash
    profile: UnifyProfile
    server_ca_pem: str
    admission: Admission = field(
        default_factory=lambda: Admission(
            MAX_OPEN_INTERACTIONS, MAX_ACTIVE_REQUESTS, INTERACTION_TTL
        )
    )
    quiet: QuietLog = field(default_factory=lambda: QuietLog(log))
    unclaimed_writes: RateLimit = field(
        default_factory=lambda: RateLimit(UNCLAIMED_WRITES_PER_SECOND, UNCLAIMED_WRITES_PER_SECOND)
    )
    unclaimed_per_mac: KeyedRateLimit = field(
        default_factory=lambda: KeyedRateLimit(1 / UNCLAIMED_INTERVAL_PER_MAC, 1, MAX_TRACKED_KEYS)
    )
    pin_checks: RateLimit = field(
        default_factory=lambda: RateLimit(PIN_CHECKS_PER_SECOND, PIN_CHECKS_PER_SECOND * 2)
    )
    dcmp_polls: KeyedRateLimit = field(
        default_factory=lambda: KeyedRateLimit(DCMP_POLLS_PER_SECOND, 5, MAX_TRACKED_KEYS)
    )
    desired: DesiredCache = field(default_factory=DesiredCache)

    @property
    def listener(self) -> str:
        """The listener's name in metrics."""
        return "secure" if self.secure else "device"


WPI = web.AppKey("wpi", WpiRuntime)


def build_runtime(services: Services, *, secure: bool) -> WpiRuntime:
    return WpiRuntime(
        services=services,
        secure=secure,
        box=services.box,
        hasher=keyed_hash(services.box),
        profile=load_profile(),
        server_ca_pem=services.pki.ca_cert.read_text(encoding="ascii"),
    )
