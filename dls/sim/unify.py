"""A simulated Unify OpenStage / OpenScape CP phone speaking WPI to a DLS.

What it does, after the reference (shared/reference/wpi-protocol.md) and the public
Node.js simulator it cites:

- keeps an item store (name, index) -> value, seeded with its identity items;
- opens interactions (``start-up``, ``solicited``, ``local-changes``, ``status``) with a
  fresh 32-hex-digit nonce per message, returns the ``JSESSIONID`` cookie, and checks
  that every answer echoes the nonce;
- answers ``ReadAllItems`` (certificates and passwords left out), ``ReadItems``,
  ``WriteItems`` (applied; ``busy`` while in a call), ``Restart`` (factory reset
  too), ``FileDeployment`` (downloads each URL from ``file-https-base-url``, then
  reports ``status``), ``SoftwareDeployment`` (see below), ``GetNextFragment`` (sends a
  large reply in parts when ``fragment_size`` is set);
- listens for contact-me on 127.0.0.1 and opens a ``solicited`` session, honouring its
  contact gap; after ``CleanUp`` with ``send-solicited`` it calls back once idle;
- after accepting ``goto-secure-mode`` it switches to secure mode: the next sessions go
  to the secure port with the client certificate and key it was given;
- waits ``Retry-After`` (plus up to a fifth, a guess) on ``503`` and sends the message again.

Firmware (``SoftwareDeployment``, reference §11): after the session's ``CleanUp`` the
phone downloads the image from ``file-https-base-url``, installs it, reboots and sends
``start-up`` naming the new ``software-version`` (the dotted ``file-sw-version`` read as
``V<major> R<rest>``). WPI carries no checksum of the image, so the phone cannot verify
one; it keeps the SHA-256 of what it downloaded (``installs``) for the tests to check.
A failed download, or ``fail_firmware``, makes the install fail: the phone keeps its
version, does not reboot, and reports ``file-deployment-status`` ``failed`` for the
``APP`` file in a ``status`` message. The reference names ``status`` after "file/software
deployment" (§7.7) but shows it only for files; reporting a failed install that way,
and no ``status`` after a successful one, is our guess.

Real phones do not verify the DLS's certificate in default mode [DG p.12]; the simulator
verifies it when given the CA, because the tests doubt the server, not the phone.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import random
import secrets
import ssl
import tempfile
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import aiohttp
from aiohttp import web
from lxml import etree

__all__ = [
    "HttpAnswer",
    "Install",
    "Interaction",
    "SimulationError",
    "UnifyPhone",
    "mac_items",
]

NAMESPACE = "http://www.siemens.com/DLS"
LOGIN_SERVICE_PATH = "/DeploymentService/LoginService"
CONTACT_PATH = "/contact_dls.html/ContactDLS"
COOKIE = "JSESSIONID"
USER_AGENT = "OpenStage sim"
MAX_ROUND_TRIPS = 64  # per interaction; a DLS that never says CleanUp is broken
MAX_FOLLOW_UPS = 16  # interactions one interaction leads to (restarts, status reports)
MAX_ANSWER_BYTES = 4 * 1024 * 1024
MAX_DOWNLOAD_BYTES = 64 * 1024 * 1024
# Never reported by ReadAllItems: certificates [DG p.30], and passwords (our guess of
# what firmware does; a DLS must cope with either).
_UNREPORTED = frozenset(
    {
        "dls-client-certificate",
        "dls-server-ca",
        "goto-secure-mode",
        "sip-pwd",
        "admin-pwd",
        "user-pwd",
        "ssh-password",
        "file-pwd",
        "cloud-pin-value",
    }
)

Key = tuple[str, int | None]
Report = list[tuple[str, int | None, str]]  # items a phone attaches: (name, index, value)
FollowUp = tuple[str, Report | None]  # the next interaction: reason and extra items


class Outgoing(NamedTuple):
    """A message the phone sends, with the nonce its answer must echo."""

    body: bytes
    nonce: str


@dataclass(frozen=True, slots=True)
class HttpAnswer:
    """What the phone reads of an HTTP answer."""

    status: int
    body: bytes  # at most MAX_ANSWER_BYTES
    retry_after: str | None
    chunked: bool
    content_length: int | None
    cookie: str | None  # the session cookie set ("" when cleared), None if not named


class SimulationError(RuntimeError):
    """The server answered something a phone could not work with."""


@dataclass
class Interaction:
    """One interaction as the phone saw it: what it sent first and every action it got."""

    reason: str
    secure: bool
    actions: list[str] = field(default_factory=list)
    written: dict[Key, str] = field(default_factory=dict)
    replies: list[str] = field(default_factory=list)  # status of each reply-to sent
    send_solicited: bool = False
    refused: int = 0  # 503 answers before it got through

    @property
    def configured(self) -> bool:
        return "WriteItems" in self.actions and self.replies[-1:] != ["busy"]


@dataclass(frozen=True)
class Install:
    """One SoftwareDeployment as the phone carried it out."""

    url: str
    version: str | None  # file-sw-version as sent
    status: int  # HTTP status of the download; 0: no connection
    sha256: str | None  # of the bytes downloaded, when the download succeeded
    installed: bool


def mac_items(mac: str) -> str:
    """``001ae8123456`` -> ``00:1A:E8:12:34:56``, as phones write mac-addr [DG p.33]."""
    plain = mac.replace(":", "").upper()
    return ":".join(plain[i : i + 2] for i in range(0, 12, 2))


def _nonce() -> str:
    return secrets.token_hex(16).upper()


def _tag(local: str) -> str:
    return f"{{{NAMESPACE}}}{local}"


def _deployment_status(index: int, url: str, file_type: str, ok: bool) -> Report:
    """The ``status`` items of one file [DG p.54]; the date/time format is our guess."""
    now = dt.datetime.now(dt.UTC)
    return [
        ("file-deployment-name", index, url.rsplit("/", 1)[-1]),
        ("file-deployment-type", index, file_type),
        ("file-deployment-status", index, "ok" if ok else "failed"),
        ("file-deployment-date", index, now.strftime("%Y-%m-%d")),
        ("file-deployment-time", index, now.strftime("%H:%M:%S")),
    ]


def _dotted_to_software_version(dotted: str) -> str:
    """``3.5.16.0`` -> ``V3 R5.16.0`` [NODE]."""
    major, _, rest = dotted.partition(".")
    return f"V{major} R{rest}" if rest else dotted


class UnifyPhone:
    def __init__(
        self,
        mac: str,
        *,
        device_url: str,
        secure_url: str,
        ca_file: Path | None = None,
        tls: ssl.SSLContext | None = None,
        http: aiohttp.ClientSession | None = None,
        model: str = "OpenStage 40",
        software_version: str = "V3 R5.12.0",
        e164: str | None = None,
        pin: str | None = None,
        items: dict[Key, str] | None = None,
        fragment_size: int | None = None,
        contact_gap: float = 300.0,
        refuse_items: Iterable[str] = (),
        max_refusals: int = 1000,
        workdir: Path | None = None,
        fail_firmware: bool = False,
    ) -> None:
        self.mac = mac.replace(":", "").lower()
        self.device_url = device_url.rstrip("/")
        self.secure_url = secure_url.rstrip("/")
        self.ca_file = ca_file
        self.tls = tls  # for the default port; many phones may share one context
        self.pin = pin
        self.fragment_size = fragment_size
        self.contact_gap = contact_gap
        self.refuse_items = frozenset(refuse_items)
        self.max_refusals = max_refusals
        self.fail_firmware = fail_firmware  # downloads, then fails every install
        self.items: dict[Key, str] = {
            ("device-type", None): model,
            ("software-type", None): "Siemens SIP",
            ("software-version", None): software_version,
            ("mac-addr", None): mac_items(self.mac),
            ("sntp-tz-offset", None): "0",
        }
        if e164:
            self.items[("e164", None)] = e164
        self.items.update(items or {})
        self.factory_items = dict(self.items)
        self.in_call = False
        self.secure = False
        self.interactions: list[Interaction] = []
        self.contacts: list[dict[str, str]] = []  # ContactMe requests received
        self.downloads: list[tuple[str, int]] = []  # (url, HTTP status)
        self.installs: list[Install] = []
        self._own_http = http is None
        self._http = http
        self._secure_http: aiohttp.ClientSession | None = None
        self._workdir = workdir
        self._tempdir: tempfile.TemporaryDirectory[str] | None = None
        self._lock = asyncio.Lock()
        self._callback_due = False
        self._last_contact = -1e9
        self._runner: web.AppRunner | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._changed = asyncio.Condition()

    # --- lifecycle -------------------------------------------------------------------

    async def listen(self, host: str = "127.0.0.1") -> str:
        """Start the contact-me listener; its URI goes into ``contact-me-uri``."""
        app = web.Application()
        app.router.add_post(CONTACT_PATH, self._contact_me)
        app.router.add_get(CONTACT_PATH, self._contact_me)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, 0)
        await site.start()
        server = site._server
        assert server is not None and server.sockets  # type: ignore[attr-defined]
        port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        uri = f"http://{host}:{port}{CONTACT_PATH}"
        self.items[("contact-me-uri", None)] = uri
        self.factory_items[("contact-me-uri", None)] = uri
        return uri

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._runner is not None:
            await self._runner.cleanup()
        if self._secure_http is not None:
            await self._secure_http.close()
        if self._own_http and self._http is not None:
            await self._http.close()
        if self._tempdir is not None:
            self._tempdir.cleanup()

    async def __aenter__(self) -> UnifyPhone:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    # --- what tests drive ------------------------------------------------------------

    async def start_up(self) -> list[Interaction]:
        """Boot: a start-up interaction and whatever it leads to (restart, secure mode)."""
        return await self.run("start-up")

    async def solicited(self) -> list[Interaction]:
        return await self.run("solicited")

    async def local_change(self, changes: dict[Key, str]) -> list[Interaction]:
        """Change settings on the phone, then report them with the V2R2 flags [DG p.40]."""
        self.items.update(changes)
        extra = [
            ("configuration-changed-flag", None, "true"),
            ("configuration-attached-flag", None, "true"),
            ("configuration-attached-number", None, str(len(changes))),
            *((name, index, value) for (name, index), value in changes.items()),
        ]
        return await self.run("local-changes", extra)

    async def hang_up(self) -> list[Interaction]:
        """End the call; a phone told ``send-solicited`` calls back now [DG p.74]."""
        self.in_call = False
        if self._callback_due:
            self._callback_due = False
            return await self.run("solicited")
        return []

    async def wait_for(self, predicate: Callable[[UnifyPhone], bool]) -> None:
        """Until ``predicate(self)`` holds; wrap it in ``asyncio.timeout``."""
        async with self._changed:
            await self._changed.wait_for(lambda: predicate(self))

    def value(self, name: str, index: int | None = None) -> str | None:
        return self.items.get((name, index))

    # --- one interaction and what follows it ----------------------------------------

    async def run(self, reason: str, extra: Report | None = None) -> list[Interaction]:
        """One interaction, then every interaction it causes (restart, secure, status)."""
        done: list[Interaction] = []
        async with self._lock:
            queue: deque[FollowUp] = deque([(reason, extra)])
            while queue:
                if len(done) > MAX_FOLLOW_UPS:
                    raise SimulationError("one interaction led to too many others")
                interaction, follow_ups = await self._interaction(*queue.popleft())
                done.append(interaction)
                queue.extend(follow_ups)
        return done

    async def _interaction(
        self, reason: str, extra: Report | None
    ) -> tuple[Interaction, list[FollowUp]]:
        interaction = Interaction(reason, self.secure)
        cookie: str | None = None
        pending: list[str] = []  # what to do after CleanUp
        files: list[tuple[int, str, str]] = []
        software: str | None = None
        factory = False
        outgoing = self._message(reason, items=self._opening_items(reason, extra))
        fragments: list[Outgoing] = []
        for _ in range(MAX_ROUND_TRIPS):
            cookie, action, nonce_ok, items, answer_items = await self._send(
                outgoing, cookie, interaction
            )
            if not nonce_ok:
                raise SimulationError("the answer does not echo the nonce")
            interaction.actions.append(action)
            if action == "CleanUp":
                interaction.send_solicited = answer_items.get(("send-solicited", None)) == "true"
                break
            if action == "GetNextFragment":
                if not fragments:
                    raise SimulationError("GetNextFragment without a fragmented reply")
                outgoing = fragments.pop(0)
                continue
            status, failed = "accepted", []
            if action in ("WriteItems", "Restart", "FileDeployment", "SoftwareDeployment") and (
                self.in_call
            ):
                status = "busy"
            elif action == "WriteItems":
                failed = self._apply(items, interaction)
                if "goto-secure-mode" in (name for name, _, _ in items) and (
                    "goto-secure-mode" not in failed
                ):
                    pending.append("secure")
            elif action == "Restart":
                factory = answer_items.get(("restart-type", None)) == "FactoryReset"
                pending.append("restart")
            elif action == "FileDeployment":
                files = self._files(items)
                pending.append("files")
            elif action == "SoftwareDeployment":
                software = answer_items.get(("file-sw-version", None))
                pending.append("software:" + answer_items.get(("file-https-base-url", None), ""))
            interaction.replies.append(status)
            reply_items: list[tuple[str, int | None, str, bool]] = [
                (name, None, "", True) for name in failed
            ]
            if action == "ReadAllItems":
                reply_items = [(n, i, v, False) for (n, i), v in self._reported().items()]
            elif action == "ReadItems":
                reply_items = [
                    (n, i, self.items.get((n, i), ""), (n, i) not in self.items)
                    for n, i, _ in items
                ]
            parts = self._reply(action, status, reply_items)
            outgoing, fragments = parts[0], parts[1:]
        else:
            raise SimulationError("no CleanUp after many round trips")
        async with self._changed:
            self.interactions.append(interaction)
            if interaction.send_solicited:
                self._callback_due = True
            self._changed.notify_all()
        return interaction, await self._after(pending, files, software, factory)

    async def _after(
        self,
        pending: list[str],
        files: list[tuple[int, str, str]],
        software: str | None,
        factory: bool,
    ) -> list[FollowUp]:
        """What the phone does once the session ended: the interactions it opens next.

        Everything accepted in the session is carried out, in the order it was sent; a
        reboot (restart, secure mode, new firmware) comes last, with one ``start-up``.
        The reference does not say what a phone does when one session holds several of
        these; doing all of them is our guess.
        """
        follow_ups: list[FollowUp] = []
        reboot = False
        for step in pending:
            if step == "secure":
                self._go_secure()
                reboot = True  # reference §13: start-up on the secure port
            elif step == "restart":
                if factory:
                    self._factory_reset()
                reboot = True
            elif step.startswith("software:"):
                report = await self._install(step.removeprefix("software:"), software)
                if report is None:
                    reboot = True  # reference §11: reboots, then start-up with the new version
                else:
                    follow_ups.append(("status", report))
            elif step == "files":
                follow_ups.append(("status", await self._deploy_files(files)))
        if reboot:
            follow_ups.append(("start-up", None))
        return follow_ups

    async def _deploy_files(self, files: list[tuple[int, str, str]]) -> Report:
        report: Report = []
        for index, url, file_type in files:
            ok = await self._download(url) is not None
            report += _deployment_status(index, url, file_type, ok)
        return report

    async def _install(self, url: str, version: str | None) -> Report | None:
        """Download and install an image; None if it runs now, else the ``status`` report."""
        digest = await self._download(url)
        installed = digest is not None and bool(version) and not self.fail_firmware
        status = self.downloads[-1][1]
        self.installs.append(Install(url, version, status, digest, installed))
        if installed and version:
            self.items[("software-version", None)] = _dotted_to_software_version(version)
            return None
        return _deployment_status(1, url, "APP", ok=False)

    # --- messages ----------------------------------------------------------------------

    def _opening_items(
        self, reason: str, extra: Report | None
    ) -> list[tuple[str, int | None, str, bool]]:
        if reason in ("status", "local-changes"):  # the report itself, no identity [DG p.40/54]
            base = [("mac-addr", None, self.items[("mac-addr", None)], False)]
            return base + [(n, i, v, False) for n, i, v in extra or ()]
        identity = (
            "device-type",
            "software-type",
            "software-version",
            "mac-addr",
            "e164",
            "contact-me-uri",
        )
        items = [
            (n, None, self.items[(n, None)], False) for n in identity if (n, None) in self.items
        ]
        if self.pin and reason in ("start-up", "solicited"):
            items.append(("cloud-pin-value", None, self.pin, False))
        items += [(n, i, v, False) for n, i, v in extra or ()]
        return items

    def _message(
        self,
        reason: str,
        *,
        items: list[tuple[str, int | None, str, bool]] = (),  # type: ignore[assignment]
        action: str | None = None,
        status: str | None = None,
        fragment: str | None = None,
    ) -> Outgoing:
        nonce = _nonce()
        root = etree.Element(_tag("WorkpointMessage"), nsmap={None: NAMESPACE})
        message = etree.SubElement(root, _tag("Message"), nonce=nonce, maxItems="-1")
        if fragment is not None:
            message.set("fragment", fragment)
        reason_element = etree.SubElement(message, _tag("ReasonForContact"))
        reason_element.text = reason
        if action is not None:
            reason_element.set("action", action)
        if status is not None:
            reason_element.set("status", status)
        if items:
            item_list = etree.SubElement(message, _tag("ItemList"))
            for name, index, value, failed in items:
                element = etree.SubElement(item_list, _tag("Item"), name=name)
                if index is not None:
                    element.set("index", str(index))
                if failed:
                    element.set("status", "failed")
                elif value:
                    element.text = value
        return Outgoing(etree.tostring(root, xml_declaration=True, encoding="UTF-8"), nonce)

    def _reply(
        self, action: str, status: str, items: list[tuple[str, int | None, str, bool]]
    ) -> list[Outgoing]:
        size = self.fragment_size
        if not size or len(items) <= size:
            return [self._message("reply-to", items=items, action=action, status=status)]
        chunks = [items[i : i + size] for i in range(0, len(items), size)]
        return [
            self._message(
                "reply-to",
                items=chunk,
                action=action,
                status=status,
                fragment="final" if number == len(chunks) - 1 else "next",
            )
            for number, chunk in enumerate(chunks)
        ]

    async def _send(
        self, outgoing: Outgoing, cookie: str | None, interaction: Interaction
    ) -> tuple[str | None, str, bool, list[tuple[str, int | None, str]], dict[Key, str]]:
        body, nonce = outgoing
        while True:
            response = await self._post(body, cookie)
            if response.status == 503 and interaction.refused < self.max_refusals:
                interaction.refused += 1
                # At least as long as told (RFC 9110 10.2.3), plus up to a fifth more so
                # phones told the same second do not return in step. How long a real
                # Unify phone waits is not documented: this is a guess.
                delay = float(response.retry_after or "1")
                await asyncio.sleep(delay * (1 + 0.2 * random.random()))
                continue
            if response.status != 200:
                text = response.body.decode(errors="replace")
                raise SimulationError(f"HTTP {response.status}: {text}")
            if response.chunked:
                raise SimulationError("chunked answer: firmware up to V2R2 cannot read it")
            if response.content_length is None:
                raise SimulationError("answer without Content-Length")
            if response.cookie is not None:
                cookie = response.cookie or None
            answer = response.body
            break
        root = etree.fromstring(answer, etree.XMLParser(resolve_entities=False, no_network=True))
        if root.tag != _tag("DLSMessage"):
            raise SimulationError(f"unexpected answer root {root.tag}")
        message = root.find(_tag("Message"))
        if message is None:
            raise SimulationError("answer without Message")
        action = (message.findtext(_tag("Action")) or "").strip()
        items = [
            (
                item.get("name", ""),
                int(item.get("index")) if item.get("index") else None,
                item.text or "",
            )
            for item in message.iterfind(f"{_tag('ItemList')}/{_tag('Item')}")
        ]
        return (
            cookie,
            action,
            message.get("nonce") == nonce,
            items,
            {(n, i): v for n, i, v in items},
        )

    async def _post(self, body: bytes, cookie: str | None) -> HttpAnswer:
        """One HTTP exchange with the DLS: the phone's transport, which a load generator
        may replace with a leaner one (``bench/wpi.py``)."""
        http = await self._client()
        base = self.secure_url if self.secure else self.device_url
        headers = {"Content-Type": "text/xml; charset=utf-8", "User-Agent": USER_AGENT}
        if cookie:
            headers["Cookie"] = f"{COOKIE}={cookie}"
        async with http.post(base + LOGIN_SERVICE_PATH, data=body, headers=headers) as response:
            morsel = response.cookies.get(COOKIE)
            return HttpAnswer(
                status=response.status,
                body=await response.content.read(MAX_ANSWER_BYTES),
                retry_after=response.headers.get("Retry-After"),
                chunked="chunked" in response.headers.get("Transfer-Encoding", "").lower(),
                content_length=response.content_length,
                cookie=morsel.value if morsel is not None else None,
            )

    async def _client(self) -> aiohttp.ClientSession:
        if self.secure:
            if self._secure_http is None:
                raise SimulationError("secure mode without credentials")
            return self._secure_http
        if self._http is None:
            self._http = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self._default_ssl()),
                cookie_jar=aiohttp.DummyCookieJar(),
            )
        return self._http

    def _default_ssl(self) -> ssl.SSLContext:
        if self.tls is not None:
            return self.tls
        if self.ca_file is not None:
            return ssl.create_default_context(cafile=str(self.ca_file))
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # what real phones do in default mode [DG p.12]
        return context

    # --- the phone's behaviour ---------------------------------------------------------

    def _reported(self) -> dict[Key, str]:
        return {key: value for key, value in self.items.items() if key[0] not in _UNREPORTED}

    def _apply(
        self, items: list[tuple[str, int | None, str]], interaction: Interaction
    ) -> list[str]:
        failed = []
        for name, index, value in items:
            if name in self.refuse_items:
                failed.append(name)
                continue
            self.items[(name, index)] = value
            interaction.written[(name, index)] = value
        return failed

    def _files(self, items: list[tuple[str, int | None, str]]) -> list[tuple[int, str, str]]:
        by_index: dict[int, dict[str, str]] = {}
        for name, index, value in items:
            by_index.setdefault(index or 0, {})[name] = value
        return [
            (index, fields.get("file-https-base-url", ""), fields.get("file-type", ""))
            for index, fields in sorted(by_index.items())
        ]

    async def _download(self, url: str) -> str | None:
        """Fetch ``url``; the SHA-256 of its bytes, or None if it did not come."""
        http = await self._client()
        digest, size = hashlib.sha256(), 0
        try:
            async with http.get(url) as response:
                while size < MAX_DOWNLOAD_BYTES and (block := await response.content.read(2**16)):
                    digest.update(block)
                    size += len(block)
                self.downloads.append((url, response.status))
                return digest.hexdigest() if response.status == 200 else None
        except (aiohttp.ClientError, OSError):
            self.downloads.append((url, 0))
            return None

    def _go_secure(self) -> None:
        credentials = self.items.get(("dls-client-certificate", None))
        server_ca = self.items.get(("dls-server-ca", 1))
        if not credentials or not server_ca:
            raise SimulationError("goto-secure-mode without certificate or server CA")
        directory = self._directory()
        bundle, ca = directory / "client.pem", directory / "server-ca.pem"
        bundle.write_text(credentials)
        ca.write_text(server_ca)
        context = ssl.create_default_context(cafile=str(ca))
        context.load_cert_chain(bundle)
        self._secure_http = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=context), cookie_jar=aiohttp.DummyCookieJar()
        )
        self.secure = True

    def _factory_reset(self) -> None:
        self.items = dict(self.factory_items)
        self.secure = False

    def _directory(self) -> Path:
        if self._workdir is not None:
            self._workdir.mkdir(parents=True, exist_ok=True)
            return self._workdir
        if self._tempdir is None:
            self._tempdir = tempfile.TemporaryDirectory(prefix=f"unify-{self.mac}-")
        return Path(self._tempdir.name)

    async def _contact_me(self, request: web.Request) -> web.Response:
        fields = dict(await request.post()) if request.method == "POST" else dict(request.query)
        self.contacts.append({key: str(value) for key, value in fields.items()})
        loop = asyncio.get_running_loop()
        if (
            fields.get("ContactMe") == "true"
            and loop.time() - self._last_contact >= self.contact_gap
        ):
            self._last_contact = loop.time()
            task = asyncio.create_task(self._solicited_after_contact())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        async with self._changed:
            self._changed.notify_all()
        return web.Response(status=204, headers={"Server": "DlsClient"})  # [DG p.15]

    async def _solicited_after_contact(self) -> None:
        await self.run("solicited")
