"""Detection: which vendor, model, firmware and MAC a file request comes from.

The first step of the device data flow (DESIGN.md), before any database lookup, so it is
pure and cheap: regular expressions over the User-Agent and the request path, both taken
from the vendor profiles. The User-Agent names the vendor, model and version; the path
names the file and often the MAC (reference: "take the MAC from the request path when the
file name contains it"). Where both carry a MAC they must agree; a disagreement is a
``Rejection``, never a guess, because the MAC decides whose secrets the device gets.

The result says which pattern matched (``evidence``) so an operator can see why a request
was taken for, say, a Poly VVX 400 with BootROM 5.0.3.
"""

from __future__ import annotations

import functools
import re
import string
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import NamedTuple

from dls.db.types import storable
from dls.provisioning.files.profiles import (
    FileSpec,
    ModelSpec,
    ProfileSet,
    UserAgentPattern,
    VendorProfile,
    template_fields,
)
from dls.provisioning.files.vocabulary import MacCase, VersionKind

__all__ = [
    "Detection",
    "Detector",
    "Evidence",
    "EvidenceSource",
    "RejectReason",
    "Rejection",
    "detect",
    "normalise_mac",
]

MAX_USER_AGENT_LENGTH = 512  # real ones stay under ~130; bounds regex work on hostile input
MAX_PATH_LENGTH = 1024
CAPTURED_MAX = 64  # a model or version from the User-Agent: the columns' length
# A phone sends one User-Agent on every request of a boot (and Yealink's names its MAC):
# its match is looked up once per phone, not once per file.
USER_AGENTS_REMEMBERED = 4096
_NOT_A_MAC = frozenset({"000000000000", "ffffffffffff"})
_HEX12 = re.compile(r"^[0-9a-f]{12}\Z")


class EvidenceSource(StrEnum):
    USER_AGENT = "user-agent"
    PATH = "path"


class RejectReason(StrEnum):
    UNRECOGNISED = "unrecognised"  # no profile knows this User-Agent or path
    AMBIGUOUS = "ambiguous"  # no User-Agent match and the path fits several vendors
    MAC_MISMATCH = "mac-mismatch"  # path and User-Agent name different MACs
    MODEL_MISMATCH = "model-mismatch"  # the file is another model's file


class Evidence(NamedTuple):  # built per request: a tuple is the cheapest record
    """One match: which rule of which vendor matched, and what it captured."""

    source: EvidenceSource
    vendor: str
    rule: str  # User-Agent pattern name or file spec name
    captured: Mapping[str, str] = MappingProxyType({})


class Detection(NamedTuple):  # one per request, like Evidence
    """What the request says about the device.

    ``model`` is the profile's name for a validated model, else the User-Agent's spelling
    with ``model_spec`` None. ``firmware_version`` is None when the User-Agent carried only
    a BootROM/updater version (``updater_version``). ``file`` is None when the path is not
    one of the vendor's files (answer 404).
    """

    vendor: str
    model: str | None
    model_spec: ModelSpec | None
    firmware_version: str | None
    updater_version: str | None
    hardware: str | None
    mac: str | None
    file: FileSpec | None
    evidence: tuple[Evidence, ...]


@dataclass(frozen=True, slots=True)
class Rejection:
    reason: RejectReason
    detail: str
    evidence: tuple[Evidence, ...] = ()


def normalise_mac(text: str) -> str | None:
    """12 lower-case hex digits from any common spelling; None if it is no usable MAC."""
    mac = text.replace(":", "").replace("-", "").replace(".", "").lower()
    if not _HEX12.match(mac) or mac in _NOT_A_MAC:
        return None
    return mac


def detect(profiles: ProfileSet, path: str, user_agent: str | None) -> Detection | Rejection:
    """Identify the device behind a file request; see ``Detector.detect``."""
    return Detector(profiles).detect(path, user_agent)


@dataclass(frozen=True, slots=True)
class _FileMatcher:
    profile: VendorProfile
    spec: FileSpec
    pattern: re.Pattern[str]


class Detector:
    """Detection with every path pattern compiled once; build one per loaded ProfileSet."""

    def __init__(self, profiles: ProfileSet) -> None:
        self._profiles = profiles
        self._files: dict[str, list[_FileMatcher]] = {
            profile.vendor: _file_matchers(profile) for profile in profiles
        }
        self._user_agent = functools.lru_cache(maxsize=USER_AGENTS_REMEMBERED)(
            functools.partial(_match_user_agent, profiles)
        )

    def detect(self, path: str, user_agent: str | None) -> Detection | Rejection:
        """Vendor, model, version and MAC of the device requesting ``path``.

        Pre: ``path`` is the URL path, percent-decoded, without query string.
        Post: a ``Detection`` whose ``mac`` is 12 lower-case hex digits or None, or a
        ``Rejection`` saying why the request cannot be trusted to be what it claims.
        """
        if len(path) > MAX_PATH_LENGTH or len(user_agent or "") > MAX_USER_AGENT_LENGTH:
            return Rejection(
                RejectReason.UNRECOGNISED, "path or User-Agent too long to be a device"
            )
        agent = self._user_agent(user_agent or "")
        vendors = [agent[0]] if agent else list(self._profiles)
        hits = [hit for profile in vendors if (hit := self._match_path(profile, path))]
        evidence: list[Evidence] = []
        if agent:
            evidence.append(
                Evidence(EvidenceSource.USER_AGENT, agent[0].vendor, agent[1].name, agent[2])
            )
        evidence += [
            Evidence(EvidenceSource.PATH, m.profile.vendor, m.spec.name, g) for m, g in hits
        ]
        if agent is None:
            if not hits:
                return Rejection(
                    RejectReason.UNRECOGNISED, "no profile matches the User-Agent or path"
                )
            if len(hits) > 1:
                names = ", ".join(sorted(matcher.profile.vendor for matcher, _ in hits))
                return Rejection(
                    RejectReason.AMBIGUOUS, f"path fits files of {names}", tuple(evidence)
                )
        profile = agent[0] if agent else hits[0][0].profile
        ua_groups = agent[2] if agent else {}
        path_hit = hits[0] if hits else None
        return _conclude(profile, agent[1] if agent else None, ua_groups, path_hit, tuple(evidence))

    def _match_path(
        self, profile: VendorProfile, path: str
    ) -> tuple[_FileMatcher, dict[str, str]] | None:
        for matcher in self._files[profile.vendor]:
            match = matcher.pattern.search(path)
            if match is None:
                continue
            groups = {name: value for name, value in match.groupdict().items() if value is not None}
            if "mac" in groups:
                mac = normalise_mac(groups["mac"])
                if mac is None:
                    continue  # 000000000000.cfg is Poly's master file, not a device file
                groups["mac"] = mac
            return matcher, groups
        return None


def _conclude(
    profile: VendorProfile,
    pattern: UserAgentPattern | None,
    ua: Mapping[str, str],
    path_hit: tuple[_FileMatcher, dict[str, str]] | None,
    evidence: tuple[Evidence, ...],
) -> Detection | Rejection:
    path_groups = path_hit[1] if path_hit else {}
    ua_mac = normalise_mac(ua["mac"]) if "mac" in ua else None
    path_mac = path_groups.get("mac")  # normalised by _match_path
    if ua_mac and path_mac and ua_mac != path_mac:
        return Rejection(
            RejectReason.MAC_MISMATCH, f"path MAC {path_mac} != User-Agent MAC {ua_mac}", evidence
        )
    model_spec = profile.model(ua["model"]) if "model" in ua else None
    file_id = path_groups.get("file_id")
    path_models = [m for m in profile.models if m.file_id == file_id] if file_id else []
    if model_spec is not None and path_models and model_spec not in path_models:
        return Rejection(
            RejectReason.MODEL_MISMATCH,
            f"{path_hit[0].spec.template if path_hit else 'file'} is not a {model_spec.name} file",
            evidence,
        )
    if "model" not in ua and len(path_models) == 1:
        model_spec = path_models[0]
    model = model_spec.name if model_spec else ua.get("model")
    updater = pattern is not None and pattern.version_kind is VersionKind.UPDATER
    version = ua.get("version")
    return Detection(
        vendor=profile.vendor,
        model=model,
        model_spec=model_spec,
        firmware_version=None if updater else version,
        updater_version=version if updater else None,
        hardware=ua.get("hardware"),
        mac=path_mac or ua_mac,
        file=path_hit[0].spec if path_hit else None,
        evidence=evidence,
    )


def _match_user_agent(
    profiles: ProfileSet, user_agent: str
) -> tuple[VendorProfile, UserAgentPattern, Mapping[str, str]] | None:
    """The first pattern matching ``user_agent``, with what it captured (read-only: the
    result is shared by every request that sends this User-Agent)."""
    if not user_agent:
        return None
    for profile in profiles:
        for pattern in profile.user_agents:
            match = pattern.pattern.search(user_agent)
            if match:
                # A model or version goes on to the database and the logs: storable.
                groups = {
                    name: text
                    for name, value in match.groupdict().items()
                    if (text := storable(value, CAPTURED_MAX)) is not None
                }
                return profile, pattern, MappingProxyType(groups)
    return None


def _file_matchers(profile: VendorProfile) -> list[_FileMatcher]:
    """Literal names first, so 000000000000.cfg is the master and not a {mac} file."""
    specs = sorted(profile.files, key=lambda spec: bool(template_fields(spec.template)))
    return [
        _FileMatcher(
            profile, spec, re.compile(rf"(?:^|/){_template_regex(profile, spec.template)}\Z")
        )
        for spec in specs
    ]


def _template_regex(profile: VendorProfile, template: str) -> str:
    mac = {
        MacCase.LOWER: "[0-9a-f]{12}",
        MacCase.UPPER: "[0-9A-F]{12}",
        MacCase.EITHER: "[0-9a-fA-F]{12}",
    }[profile.mac_case]
    file_ids = sorted({m.file_id for m in profile.models if m.file_id}, key=len, reverse=True)
    fields = {
        "mac": f"(?P<mac>{mac})",
        "file_id": f"(?P<file_id>{'|'.join(map(re.escape, file_ids)) or '(?!)'})",
    }
    parts = []
    for literal, name, _, _ in string.Formatter().parse(template):
        parts.append(re.escape(literal))
        if name is not None:
            parts.append(fields[name])
    return "".join(parts)
