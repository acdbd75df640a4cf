"""Simulated phones and ATAs: a device of any file-provisioned vendor, made from its profile.

A ``SimulatedPhone`` boots the way reference/vendor-provisioning.md says the vendor's
devices do. It requests the profile's files in order, under the names
``VendorProfile.file_name`` gives for its model and MAC, and follows what those files name
(a boot file's includes, Cisco's ``Profile_Rule_B``, Snom's ``firmware_status``). It sends
a real-format User-Agent rendered from ``user_agents.toml``. It authenticates as the device
would: HTTP Digest with its MAC as user name, through aiohttp's own client-side
``DigestAuthMiddleware`` (an implementation independent of the server's), or a TLS client
certificate. It keeps each file's ETag and sends ``If-None-Match`` on the next boot, parses
every answer with ``dls.sim.formats``, and logs (file, status) for every response on the
wire, 401 challenges included.

The boot sequence, all from profile data:

- boot files are alternatives, tried in order until one answers; what it includes comes
  next, and it replaces the profile's config files (a boot file names the configs);
- a file another file points at (an include, Cisco's next profile rule) comes right after
  that file; a firmware descriptor only when a config points at it, after the configs;
- the other files follow in profile order; uploads only on ``upload()``;
- no file is requested twice in one boot.

Firmware (``update_firmware``): the device takes the image URL its configuration holds
(the profile's firmware key, wherever the vendor puts it; a directory gets the device's
own image name appended), downloads it, resuming an interrupted transfer with ``Range``
and ``If-Range``, checks its SHA-256 against what the test expects, installs it, restarts
and boots again, now naming the new version in its User-Agent. It can be told to fail:
keep its old version after the download, or come back with another version.
"""

from __future__ import annotations

import functools
import hashlib
import re
import ssl
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from types import SimpleNamespace, TracebackType
from typing import NamedTuple, Self
from urllib.parse import urljoin

import aiohttp
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from dls.devices.settings import VendorName
from dls.provisioning.files.detect import normalise_mac
from dls.provisioning.files.profiles import FileSpec, ModelSpec, VendorProfile, template_fields
from dls.provisioning.files.vocabulary import FileRole, FileScope, FirmwareLocation, FormatFamily
from dls.sim.formats import MAX_FILE_BYTES, FormatError, ParsedFile, parse_file

__all__ = [
    "DEFAULT_AGENT",
    "DEFAULT_USER_AGENTS",
    "FOLLOWED_KEYS",
    "AgentTemplate",
    "Connection",
    "Exchange",
    "FirmwareFailure",
    "FirmwareUpdate",
    "SimulatedPhone",
    "SimulationError",
    "UserAgents",
    "load_user_agents",
]

DEFAULT_USER_AGENTS = Path(__file__).with_name("user_agents.toml")
DEFAULT_AGENT = "default"
DEFAULT_TIMEOUT = 10.0  # seconds per request; a phone's own is similar

# Settings whose value is a URL the device fetches next in the same boot, by format family.
FOLLOWED_KEYS: dict[FormatFamily, tuple[str, ...]] = {
    # Cisco SPA: spa$PSN.cfg sets Profile_Rule_B..D to further profiles, fetched in turn
    # on every resync [D reference §5]. Profile_Rule itself is the next resync's rule.
    FormatFamily.FLAT_PROFILE: ("Profile_Rule_B", "Profile_Rule_C", "Profile_Rule_D"),
    # Snom: firmware_status names the firmware descriptor [D reference §3].
    FormatFamily.XML_ELEMENTS: ("firmware_status",),
}

_BUILT_IN_FIELDS = frozenset({"model", "version", "mac", "MAC", "mac_colons"})
# Cisco rules may start with options: "[--key secret] https://..." [D reference §5].
_RULE_OPTIONS = re.compile(r"^(?:\s*\[[^\]]*\])*\s*")


class SimulationError(Exception):
    """The simulation cannot go on: bad sim data, or a device the profile does not know."""


class Connection(StrEnum):
    """How requests travel: phones open a new TCP and TLS connection for every file."""

    PER_FETCH = "per-fetch"
    KEEP_ALIVE = "keep-alive"


class FirmwareFailure(StrEnum):
    """How a simulated device fails a firmware update when told to."""

    NO_INSTALL = "no-install"  # downloads, then keeps running (and reporting) its old version
    WRONG_VERSION = "wrong-version"  # installs, but comes back reporting another version


@dataclass(frozen=True, slots=True)
class FirmwareUpdate:
    """What one update did: the requests' statuses (200, then a 206 per resumption)."""

    url: str
    statuses: tuple[int, ...]
    size: int
    sha256: str
    verified: bool  # the SHA-256 was the expected one
    installed: bool
    version: str  # what the device runs and reports afterwards


class Exchange(NamedTuple):
    """One response on the wire: the file (its name under the base URL) and the status."""

    file: str
    status: int


# --- User-Agents -------------------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Example(_Strict):
    model: str
    version: str
    mac: str | None = None
    user_agent: str


class AgentTemplate(_Strict):
    """One User-Agent shape of a vendor's devices (see user_agents.toml)."""

    vendor: VendorName
    name: str = DEFAULT_AGENT
    template: str
    only: tuple[str, ...] = ()
    fields: dict[str, str] = {}
    example: _Example | None = None

    def applies_to(self, model: str) -> bool:
        return not self.only or model.casefold() in {name.casefold() for name in self.only}


class UserAgents(_Strict):
    """Every vendor's User-Agent templates, and how each vendor spells its models."""

    agents: tuple[AgentTemplate, ...]
    spellings: dict[VendorName, dict[str, dict[str, str]]] = {}

    @model_validator(mode="after")
    def _consistent(self) -> UserAgents:
        problems = []
        seen: set[tuple[str, str]] = set()
        for agent in self.agents:
            if not agent.only:
                if (agent.vendor, agent.name) in seen:
                    problems.append(f"{agent.vendor}: two {agent.name!r} entries without 'only'")
                seen.add((agent.vendor, agent.name))
            try:
                fields = template_fields(agent.template)
            except ValueError as exc:
                problems.append(f"{agent.vendor}: template {agent.template!r}: {exc}")
                continue
            spelled = set().union(*self.spellings.get(agent.vendor, {}).values())
            if unknown := fields - _BUILT_IN_FIELDS - agent.fields.keys() - spelled:
                problems.append(f"{agent.vendor}: template uses unknown {sorted(unknown)}")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def __iter__(self) -> Iterator[AgentTemplate]:  # type: ignore[override]
        return iter(self.agents)

    def agent(self, vendor: str, model: str, name: str = DEFAULT_AGENT) -> AgentTemplate:
        """The entry for ``model`` (the profile's name): one naming it, else the default."""
        candidates = [a for a in self.agents if a.vendor == vendor and a.name == name]
        for agent in sorted(candidates, key=lambda a: not a.only):
            if agent.applies_to(model):
                return agent
        raise SimulationError(f"no {name!r} User-Agent for {vendor} {model}")

    def render(
        self,
        vendor: str,
        model: str,
        version: str,
        mac: str,
        name: str = DEFAULT_AGENT,
        **overrides: str,
    ) -> str:
        """The User-Agent of a ``vendor`` ``model`` (profile name) running ``version``."""
        agent = self.agent(vendor, model, name)
        spelling = next(
            (
                fields
                for spelled, fields in self.spellings.get(vendor, {}).items()
                if spelled.casefold() == model.casefold()
            ),
            {},
        )
        values = {
            **agent.fields,
            "model": model,
            **spelling,
            "version": version,
            "mac": mac,
            "MAC": mac.upper(),
            "mac_colons": ":".join(mac[i : i + 2] for i in range(0, len(mac), 2)),
            **overrides,
        }
        try:
            return agent.template.format(**values)
        except KeyError as exc:
            raise SimulationError(f"{vendor} {model}: no value for {exc} in its template") from None


@functools.cache
def load_user_agents(path: Path = DEFAULT_USER_AGENTS) -> UserAgents:
    """Read and check a User-Agent file; raises SimulationError naming every problem."""
    try:
        return UserAgents.model_validate(tomllib.loads(path.read_text(encoding="utf-8")))
    except (OSError, tomllib.TOMLDecodeError, ValidationError) as exc:
        raise SimulationError(f"{path.name}: {exc}") from None


# --- The device ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Content:
    etag: str | None
    body: bytes
    parsed: ParsedFile


@dataclass(slots=True)
class _Boot:
    seen: set[str] = field(default_factory=set)
    deferred: list[str] = field(default_factory=list)  # firmware descriptors, fetched last


class SimulatedPhone:
    """One device; use as ``async with SimulatedPhone(...) as phone: await phone.provision()``.

    ``model`` is a profile model name or alias, ``mac`` any common MAC spelling,
    ``base_url`` where the vendor's files are served (``https://host:port/prov/``).
    ``digest_password`` makes it answer Digest challenges as ``digest_username`` (default:
    the MAC, 12 lower-case hex digits). ``client_certificate`` is (certificate, key) PEM
    paths; ``ca_file`` the CA the server certificate must chain to. ``user_agent``
    replaces the rendered one (a device lying about itself); ``agent`` picks another entry
    of the User-Agent file, e.g. "updater".
    """

    def __init__(
        self,
        profile: VendorProfile,
        model: str,
        mac: str,
        firmware_version: str,
        *,
        base_url: str,
        digest_password: str | None = None,
        digest_username: str | None = None,
        ca_file: Path | None = None,
        client_certificate: tuple[Path, Path] | None = None,
        connection: Connection = Connection.PER_FETCH,
        user_agent: str | None = None,
        agent: str = DEFAULT_AGENT,
        user_agents: UserAgents | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        spec = profile.model(model)
        if spec is None:
            raise SimulationError(f"{profile.vendor} has no model {model!r}")
        normalised = normalise_mac(mac)
        if normalised is None:
            raise SimulationError(f"not a device MAC: {mac!r}")
        self.profile = profile
        self.model: ModelSpec = spec
        self.mac = normalised
        self.firmware_version = firmware_version
        self.base_url = base_url if base_url.endswith("/") else base_url + "/"
        self.connection = connection
        self.user_agent = user_agent or (user_agents or load_user_agents()).render(
            profile.vendor, spec.name, firmware_version, self.mac, agent
        )
        # Kept to render the User-Agent again after a firmware update.
        self._agent = None if user_agent else (agent, user_agents)
        self.log: list[Exchange] = []
        self.problems: list[str] = []  # files the device refused: malformed, another MAC's
        self.connections_opened = 0
        self._digest = (
            (digest_username or self.mac, digest_password) if digest_password is not None else None
        )
        self._tls = (ca_file, client_certificate)
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None
        self._files: dict[str, FileSpec] = {
            name: file
            for file in profile.files
            if (name := profile.file_name(file, spec, self.mac)) is not None
        }
        self._content: dict[str, _Content] = {}
        self._last_body: dict[str, bytes] = {}
        self._answered: list[str] = []  # files with content in the latest boot, in order

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # --- what the device ended up with -----------------------------------------------------

    @property
    def files(self) -> dict[str, FileSpec]:
        """The profile's files under this device's names, in profile order."""
        return dict(self._files)

    @property
    def settings(self) -> dict[str, str]:
        """Vendor key -> value from the config files that answered in the latest boot;
        device files override common ones, as the device applies them."""
        merged: dict[str, str] = {}
        for scope in (FileScope.COMMON, FileScope.DEVICE):
            for name in self._answered:
                file = self._files.get(name)
                role = file.role if file else FileRole.CONFIG
                if role is FileRole.CONFIG and (file.scope if file else FileScope.DEVICE) is scope:
                    merged.update(self._content[name].parsed.settings)
        return merged

    @property
    def answered(self) -> list[str]:
        """Files that gave content (200, or 304 for a cached copy) in the latest boot."""
        return list(self._answered)

    def parsed(self, name: str) -> ParsedFile | None:
        content = self._content.get(name)
        return content.parsed if content else None

    def body(self, name: str) -> bytes | None:
        """The body of the latest response for ``name``, whatever its status."""
        return self._last_body.get(name)

    def statuses(self) -> dict[str, int]:
        """The latest status per file."""
        return {exchange.file: exchange.status for exchange in self.log}

    # --- requests ------------------------------------------------------------------------------

    async def provision(self) -> dict[str, str]:
        """Boot: request the vendor's file sequence (module docstring); the settings."""
        self._answered = []
        boot = _Boot()
        booted = False
        for name, file in self._files.items():
            if file.role is FileRole.BOOT and not booted:
                booted = await self._visit(name, boot)
        for name, file in self._files.items():
            skipped = file.role in (FileRole.BOOT, FileRole.UPLOAD, FileRole.FIRMWARE)
            if skipped or (booted and file.role is FileRole.CONFIG):
                continue
            await self._visit(name, boot)
        while boot.deferred:
            await self._visit(boot.deferred.pop(0), boot)
        return self.settings

    async def fetch(self, name: str) -> int:
        """GET one file (with If-None-Match when a copy is cached); the final status."""
        session = self._open()
        cached = self._content.get(name)
        headers = {"If-None-Match": cached.etag} if cached and cached.etag else {}
        async with session.get(self._url(name), headers=headers) as response:
            status = response.status
            if status == 200:
                body = await _read(response)
                self._last_body[name] = body
                content = self._accept(name, body, response.headers.get("ETag"))
            else:
                self._last_body[name] = await response.read()
                content = cached if status == 304 else None
        if content is not None:
            self._answered.append(name)
        return status

    async def upload(self, name: str, body: bytes) -> int:
        """PUT a file, as Poly phones upload logs and overrides; the final status."""
        session = self._open()
        async with session.put(self._url(name), data=body) as response:
            self._last_body[name] = await response.read()
            return response.status

    async def _visit(self, name: str, boot: _Boot) -> bool:
        """Fetch ``name`` once per boot, then what it points at; whether it answered."""
        if name in boot.seen:
            return name in self._answered
        boot.seen.add(name)
        await self.fetch(name)
        if name not in self._answered:
            return False
        for linked in self._links(self._content[name].parsed):
            file = self._files.get(linked)
            if file is not None and file.role is FileRole.FIRMWARE:
                boot.deferred.append(linked)
            else:
                await self._visit(linked, boot)
        return True

    def _accept(self, name: str, body: bytes, etag: str | None) -> _Content | None:
        try:
            parsed = parse_file(self.profile, body)
        except FormatError as exc:
            self.problems.append(f"{name}: {exc}")
            return None
        # Grandstream: a <mac> element, if present, must be this device's [D reference §4].
        if "mac" in parsed.meta and normalise_mac(parsed.meta["mac"]) != self.mac:
            self.problems.append(f"{name}: written for MAC {parsed.meta['mac']}")
            return None
        content = _Content(etag, body, parsed)
        self._content[name] = content
        return content

    def _links(self, parsed: ParsedFile) -> list[str]:
        """Files ``parsed`` points at: includes, then followed URL settings."""
        followed = FOLLOWED_KEYS.get(self.profile.family, ())
        targets = [*parsed.includes, *(parsed.settings.get(key, "") for key in followed)]
        return [self._name(self._expand(target)) for target in targets if target.strip()]

    def _expand(self, target: str) -> str:
        """A file reference as the device resolves it: its MAC and model substituted."""
        mac = self.profile.render_mac(self.mac)
        target = target.replace("[PHONE_MAC_ADDRESS]", mac)  # Poly CONFIG_FILES [D]
        target = _RULE_OPTIONS.sub("", target)
        # Cisco rule variables [D]: $MAU upper-case MAC, $MA lower-case, $PSN product series.
        target = target.replace("$MAU", self.mac.upper()).replace("$MA", self.mac)
        return target.replace("$PSN", self.model.file_id or "").strip()

    def _url(self, name: str) -> str:
        return name if "://" in name else self.base_url + name

    def _name(self, reference: str) -> str:
        """A reference relative to the base URL; absolute URLs elsewhere stay whole."""
        url = urljoin(self.base_url, reference)
        return url.removeprefix(self.base_url) if url.startswith(self.base_url) else url

    # --- firmware ----------------------------------------------------------------------------

    @property
    def firmware_url(self) -> str | None:
        """The image URL the latest boot's files point at (the profile's firmware key)."""
        key = self.profile.firmware_key
        for name in reversed(self._answered):
            value = self._content[name].parsed.settings.get(key, "").strip()
            if not value:
                continue
            value = _RULE_OPTIONS.sub("", value)  # Cisco rules may start with [--options]
            if "://" not in value:  # Grandstream P192 is a path; P212 says https
                value = "https://" + value
            if self.profile.firmware_location is FirmwareLocation.DIRECTORY:
                value = value.rstrip("/") + "/" + self.firmware_image_name
            return value
        return None

    @property
    def firmware_image_name(self) -> str:
        """The name a device given a directory appends (Grandstream: ``gxp2135fw.bin``)."""
        return f"{self.model.name.lower()}fw.bin"

    async def update_firmware(
        self,
        *,
        expected_sha256: str,
        version: str,
        interrupt_at: tuple[int, ...] = (),
        fail: FirmwareFailure | None = None,
        chunk_size: int = 64 * 1024,
    ) -> FirmwareUpdate:
        """Download the image ``firmware_url`` names, install it as ``version``, restart.

        ``interrupt_at``: byte counts after which the connection drops; the device resumes
        with ``Range: bytes=<have>-`` and ``If-Range: <ETag>``. An image whose SHA-256 is
        not ``expected_sha256`` is not installed. After installing, the device restarts
        and boots again (``provision``) with the new version in its User-Agent.
        """
        url = self.firmware_url
        if url is None:
            raise SimulationError(f"{self.mac}: the configuration names no firmware image")
        digest = hashlib.sha256()
        have, etag, size, statuses = 0, None, None, []
        stops = sorted(interrupt_at)
        while size is None or have < size:
            stop = next((point for point in stops if point > have), None)
            headers = {}
            if have:
                headers = {"Range": f"bytes={have}-", **({"If-Range": etag} if etag else {})}
            async with self._open().get(url, headers=headers) as response:
                statuses.append(response.status)
                if response.status == 200 and have:
                    digest, have = hashlib.sha256(), 0  # the server sent it all again
                elif response.status not in (200, 206):
                    raise SimulationError(f"{url}: HTTP {response.status}")
                etag = response.headers.get("ETag", etag)
                size = _total_size(response) if size is None or response.status == 200 else size
                while stop is None or have < stop:
                    want = chunk_size if stop is None else min(chunk_size, stop - have)
                    block = await response.content.read(want)
                    if not block:
                        break
                    digest.update(block)
                    have += len(block)
                if stop is not None and have >= stop:
                    response.close()  # the connection drops mid-transfer
                    stops.remove(stop)
            if stop is None and have < size:
                raise SimulationError(f"{url}: the server sent {have} of {size} bytes")
        sha256 = digest.hexdigest()
        verified = sha256 == expected_sha256
        installed = verified and fail is not FirmwareFailure.NO_INSTALL
        if installed:
            running = version if fail is not FirmwareFailure.WRONG_VERSION else version + ".9"
            await self._restart(running)
        return FirmwareUpdate(
            url, tuple(statuses), have, sha256, verified, installed, self.firmware_version
        )

    async def _restart(self, version: str) -> None:
        """Run ``version`` from now on: a new User-Agent, new connections, a new boot."""
        self.firmware_version = version
        if self._agent is not None:
            agent, user_agents = self._agent
            self.user_agent = (user_agents or load_user_agents()).render(
                self.profile.vendor, self.model.name, version, self.mac, agent
            )
        await self.close()
        await self.provision()

    # --- the HTTP client ---------------------------------------------------------------------

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None:
            trace = aiohttp.TraceConfig()
            trace.on_connection_create_end.append(self._connected)
            middlewares: list[aiohttp.ClientMiddlewareType] = [self._record]
            if self._digest is not None:
                middlewares.insert(0, aiohttp.DigestAuthMiddleware(*self._digest))
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    ssl=_tls_context(*self._tls),
                    force_close=self.connection is Connection.PER_FETCH,
                ),
                headers={"User-Agent": self.user_agent},
                middlewares=tuple(middlewares),
                timeout=self._timeout,
                trace_configs=[trace],
            )
        return self._session

    async def _record(
        self, request: aiohttp.ClientRequest, handler: aiohttp.ClientHandlerType
    ) -> aiohttp.ClientResponse:
        """Innermost middleware: sees every response, the Digest challenge included."""
        response = await handler(request)
        self.log.append(Exchange(self._name(str(request.url)), response.status))
        if response.status >= 400:
            # Read it now: a challenge's connection is free again for the retry.
            self._last_body[self._name(str(request.url))] = await response.read()
        return response

    async def _connected(
        self,
        session: aiohttp.ClientSession,
        context: SimpleNamespace,
        params: aiohttp.TraceConnectionCreateEndParams,
    ) -> None:
        self.connections_opened += 1


def _tls_context(
    ca_file: Path | None, client_certificate: tuple[Path, Path] | None
) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    if client_certificate is not None:
        context.load_cert_chain(*client_certificate)
    return context


def _total_size(response: aiohttp.ClientResponse) -> int:
    """The image's full size: from Content-Range on a 206, else Content-Length."""
    content_range = response.headers.get("Content-Range", "")
    if response.status == 206 and "/" in content_range:
        return int(content_range.rsplit("/", 1)[1])
    if response.content_length is None:
        raise SimulationError(f"{response.url}: no Content-Length")
    return response.content_length


async def _read(response: aiohttp.ClientResponse) -> bytes:
    body = bytearray()
    async for chunk in response.content.iter_chunked(65536):
        body += chunk
        if len(body) > MAX_FILE_BYTES:
            raise SimulationError(f"{response.url}: more than {MAX_FILE_BYTES} bytes")
    return bytes(body)
