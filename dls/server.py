"""Running the listeners: N worker processes sharing the phones' ports, and the admin
listener in a process of its own (or everything in one process).

The parent prepares everything that must happen once (certificates, migrations, the
metrics directory) before any worker starts, so workers never race on a migration or on
writing a key. The parent then only supervises and advertises mDNS; SIGTERM is passed
on, each worker finishes its in-flight requests and exits. SIGHUP creates what is missing
of the certificates, as start-up does, and is passed on: each process reads its
listeners' certificates and trusted CAs again (``dls.certificate_reload``).

Why the admin listener has a process of its own (``admin_process``, on by default): an
event loop has no priorities. While phones keep a worker's loop busy (a boot storm),
every database round trip of an admin request waits for a turn of that loop behind
dozens of connections' polls, and an admin page took 0.5-1.5 s (BENCHMARKS.md, "An
admin at work during a boot storm"). In a process of its own it waits only for the
operating system's scheduler.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import multiprocessing
import multiprocessing.synchronize
import os
import shutil
import signal
import ssl
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack, suppress
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

from dls import logs
from dls.access_log import access_lines, access_logger_class
from dls.app import build_admin_app, build_device_app, build_secure_app
from dls.certificate_reload import ListenerContexts, note_expiry
from dls.config import ConfigError, Settings, make_directory
from dls.db.engine import create_engine, session_factory
from dls.db.migrate import upgrade
from dls.db.serving import serving
from dls.db.writes import WriteBursts
from dls.devices.catalog import load_catalog
from dls.discovery import Advertiser
from dls.firmware.catalog import DEFAULT_CATALOG_DIR as DEFAULT_FIRMWARE_CATALOG
from dls.firmware.catalog import CatalogError
from dls.firmware.catalog import load_catalog as load_firmware_catalog
from dls.handshakes import HandshakeCounts, report_failures
from dls.pki import Pki, ensure_pki, fingerprint
from dls.provisioning.ledger import Ledger
from dls.provisioning.retention import LedgerRetention
from dls.rotation import stored_key_id
from dls.secretbox import KEY_FILE, PENDING_KEY_FILE, load_secret_box, read_key_file
from dls.services import Services
from dls.tenancy.bootstrap import FirstOperator, ensure_operator
from dls.tls import LISTENERS, TlsFileError, listener_context

if TYPE_CHECKING:
    from multiprocessing.sharedctypes import Synchronized

    Counter = Synchronized[int]  # shared by the supervisor and its processes

__all__ = ["Startup", "prepare", "run"]

log = logging.getLogger(__name__)

WORKER_RESTART_DELAY = 1.0  # seconds; a worker crashing at start must not spin the parent
# A boot storm opens thousands of connections at once. The accept queue is also the
# cheapest overload control there is: connections beyond it wait in the phones' own TCP
# stacks (SYN retransmits) at no CPU cost here, where a deeper queue has every one of
# them handshaked only to be told 503 (10,000 phones, 2 workers: 45-58 s with 2048,
# 77-94 s and twice the 503s with 4096). Its cost: a single worker that falls far behind
# can see the kernel reset connections it had answered with SYN cookies (1,442 of 10,000
# in a storm on one worker, none on two). BENCHMARKS.md, "WPI".
BACKLOG = 2048


class Role(StrEnum):
    """Which listeners a process serves."""

    ALL = "all"  # device, secure and admin
    PHONES = "phones"  # device and secure
    ADMIN = "admin"


@dataclass(frozen=True, slots=True)
class Startup:
    """What ``prepare`` leaves for the listeners and what ``dls serve`` prints."""

    pki: Pki
    ca_sha256: str
    first_operator: FirstOperator | None  # set on the very first start only


def prepare(settings: Settings) -> Startup:
    """Create what is missing (certificates, schema, first operator) before serving."""
    make_directory(settings.data_dir, "data_dir")
    pki = ensure_pki(settings)
    _check_tls_files(settings, pki)
    load_catalog()  # a malformed profile stops the start, not the first phone's request
    try:
        load_firmware_catalog(settings.firmware_catalog_dir or DEFAULT_FIRMWARE_CATALOG)
    except CatalogError as error:
        raise ConfigError(f"firmware catalog:\n{error}") from None
    found: list[tuple[FirstOperator | None, str | None]] = []
    run_async(_migrate(settings, found))
    first, stored_key = found[0]
    _check_secret_key(settings, stored_key)  # creates certs/secret.key before workers race
    return Startup(pki, fingerprint(pki.ca_cert), first)


def _check_tls_files(settings: Settings, pki: Pki) -> None:
    """Every listener's context, made once: a chain or CA bundle that does not load stops
    the start with its name, not a worker with a traceback."""
    for listener in LISTENERS:
        try:
            listener_context(listener, pki, client_certificates=settings.device_client_certificates)
        except TlsFileError as exc:
            raise ConfigError(f"{listener} listener: {exc}") from None


async def _migrate(
    settings: Settings, found: list[tuple[FirstOperator | None, str | None]]
) -> None:
    """The schema upgraded; the first operator made on a first start, and the id of the
    key the database's secrets are under (``_check_secret_key``)."""
    engine = create_engine(settings.effective_database_url)
    try:
        await upgrade(engine)
        async with session_factory(engine)() as session, session.begin():
            found.append((await ensure_operator(session), await stored_key_id(session)))
    finally:
        await engine.dispose()


_LOST_KEY = "; if no copy of it is left, `dls secrets forget-lost` removes them"


def _check_secret_key(settings: Settings, stored: str | None) -> None:
    """The configured key must open the secrets the database holds. A certs directory
    lost, or not carried over to a new host, used to have a new key made in silence,
    and then no phone's configuration rendered and no Digest password checked."""
    key_file = settings.certs_dir / KEY_FILE
    if stored is not None and settings.secret_key is None and not key_file.exists():
        raise ConfigError(
            f"{key_file} is missing, and the database holds secrets encrypted under key "
            f"{stored}: restore that file (or set DLS_SECRET_KEY); a new key cannot open them"
            f"{_LOST_KEY}"
        )
    box = load_secret_box(settings)  # made here on a first start
    if stored is None or stored == box.key_id:
        return
    source = "DLS_SECRET_KEY" if settings.secret_key is not None else str(key_file)
    message = (
        f"the database's secrets are encrypted under key {stored}, and the configured key "
        f"({source}) is {box.key_id}: configure the key this database was written with"
    )
    pending = settings.certs_dir / PENDING_KEY_FILE
    if pending.exists() and read_key_file(pending).key_id == stored:
        message += f"; {pending} holds it (a key rotation did not finish): move it to {key_file}"
    else:
        message += _LOST_KEY
    raise ConfigError(message)


def run(settings: Settings, startup: Startup, on_ready: Callable[[], None]) -> int:
    """Serve until SIGTERM or SIGINT; the exit code (1: a process could not start)."""
    if settings.workers == 1 and not settings.admin_process:
        run_async(
            _serve(
                settings,
                startup.pki,
                startup.ca_sha256,
                Role.ALL,
                advertise=True,
                on_ready=on_ready,
                renews=True,
            )
        )
        return 0
    return _supervise(settings, startup, on_ready)


def run_async(coroutine: Awaitable[None]) -> None:
    """Run on uvloop when it is installed: its TLS costs a fraction of asyncio's."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(coroutine)  # type: ignore[arg-type]
    else:
        uvloop.run(coroutine)  # type: ignore[arg-type]


async def _serve(
    settings: Settings,
    pki: Pki,
    ca_sha256: str,
    role: Role,
    *,
    advertise: bool,
    on_ready: Callable[[], None] | None,
    renews: bool = False,
    hangups: Counter | None = None,
) -> None:
    """Serve ``role``'s listeners until SIGTERM. ``renews``: the only process, so on SIGHUP
    it also creates missing certificates, which a supervisor does for its workers.
    ``hangups``: the supervisor's count of SIGHUPs, which it passes on only to processes
    that serve; one that came while this process read its files is caught up on once it
    serves."""
    # Before the key is read: a rotation of it cannot start while this process serves,
    # nor be under way when it starts (dls.db.serving).
    async with serving(settings.effective_database_url):
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        # Before any certificate is read: a SIGHUP from here on is acted on, none is lost.
        contexts = ListenerContexts(pki, client_certificates=settings.device_client_certificates)
        loop.add_signal_handler(signal.SIGHUP, _hangup, settings, contexts, renews)
        hangups_before = hangups.value if hangups is not None else 0

        engine = create_engine(settings.effective_database_url)
        sessions = session_factory(engine)
        writes = WriteBursts(engine)  # the device path's and the ledger's short writes
        services = Services(
            settings,
            pki,
            engine,
            sessions,
            load_secret_box(settings),
            load_catalog(),
            Ledger(sessions, writes),
            writes=writes,
        )
        reuse_port = role is not Role.ALL or settings.workers > 1
        listeners: dict[str, tuple[web.Application, str, int, ssl.SSLContext]] = {}
        if role is not Role.ADMIN:
            listeners["device"] = (
                build_device_app(services),
                settings.device_bind,
                settings.device_port,
                contexts.start("device"),
            )
            listeners["secure"] = (
                build_secure_app(services),
                settings.device_bind,
                settings.secure_port,
                contexts.start("secure"),
            )
        if role is not Role.PHONES:
            listeners["admin"] = (
                build_admin_app(services),
                settings.admin_bind,
                settings.admin_port,
                contexts.start("admin"),
            )
        note_expiry(pki.server_chains)
        handshakes = HandshakeCounts(contexts.sites)
        contexts.observers.append(handshakes.replaced)
        report_failures(contexts.sites)
        lines = access_lines() if settings.access_log else None
        access_log = logging.getLogger(logs.ACCESS_LOGGER) if settings.access_log else None
        async with AsyncExitStack() as stack:
            if lines is not None:
                stack.callback(lines.flush)  # last: after the listeners' final requests
            stack.push_async_callback(engine.dispose)
            stack.push_async_callback(services.reads.dispose)
            stack.callback(services.writes.dispose)
            await services.ledger.start()
            stack.push_async_callback(services.ledger.stop)  # after the listeners close
            services.ledger.observers.append(services.firmware.on_fetches)
            retention = LedgerRetention(services.sessions, settings.ledger_retention_days)
            await retention.start()
            stack.push_async_callback(retention.stop)
            await services.firmware.start()
            stack.push_async_callback(services.firmware.stop)
            await handshakes.start()
            stack.push_async_callback(handshakes.stop)
            for listener, (app, host, port, context) in listeners.items():
                runner = web.AppRunner(
                    app,
                    access_log_class=access_logger_class(lines, listener),
                    access_log=access_log,
                    shutdown_timeout=settings.shutdown_timeout,
                    # Closes a connection that sends no complete request head in time (silent
                    # after its handshake, or trickling headers): aiohttp's default is an hour.
                    keepalive_timeout=settings.idle_timeout,
                )
                await runner.setup()
                stack.push_async_callback(runner.cleanup)
                site = web.TCPSite(
                    runner, host, port, ssl_context=context, backlog=BACKLOG, reuse_port=reuse_port
                )
                try:
                    await site.start()
                except OSError as exc:  # the port taken, an address not this machine's
                    reason = os.strerror(exc.errno) if exc.errno else str(exc)
                    log.error(
                        "cannot listen: %s",
                        reason,
                        extra={"fields": {"listener": listener, "address": f"{host}:{port}"}},
                    )
                    raise SystemExit(1) from None  # no traceback: the line above says it all
            if advertise and settings.mdns_enabled:
                advertiser = Advertiser(settings, ca_sha256)
                await advertiser.start()
                stack.push_async_callback(advertiser.stop)
            _freeze_startup_objects()
            if on_ready is not None:
                on_ready()
            if hangups is not None and hangups.value != hangups_before:
                contexts.reload()  # the files changed while they were read, and nobody said
            await stop.wait()
            log.info("stopping: finishing in-flight requests")
        log.info("stopped")


def _freeze_startup_objects() -> None:
    """Keep what start-up built (modules, profiles, models, metadata: ~370,000 objects)
    out of every later garbage collection. They live as long as the process, yet each
    full collection walked them all: a pause of tens of milliseconds on the event loop
    every few seconds under load, ~20 us per device poll on average (``gc.freeze``, as
    the gc module's documentation suggests for long-running servers)."""
    gc.collect()
    gc.freeze()


def _supervise(settings: Settings, startup: Startup, on_ready: Callable[[], None]) -> int:
    metrics_dir = tempfile.mkdtemp(prefix="dls-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    context = multiprocessing.get_context("spawn")
    stopping = False

    roles = [Role.PHONES if settings.admin_process else Role.ALL] * settings.workers
    if settings.admin_process:
        roles.append(Role.ADMIN)

    # Set by each process once its listeners accept connections: the banner (and anyone
    # waiting for it) must not announce ports nobody listens on yet, and SIGHUP goes only
    # to a process that serves (before, it would end it). One per process started, so a
    # process restarted after a crash is not taken for serving before it does.
    ready = [context.Event() for _ in roles]
    served = [False] * len(roles)  # by any process in that place, since the start
    hangups: Counter = context.Value("i", 0)

    def start(index: int) -> multiprocessing.process.BaseProcess:
        role = roles[index]
        name = "dls-admin" if role is Role.ADMIN else f"dls-worker-{index}"
        served[index] = served[index] or ready[index].is_set()
        ready[index] = context.Event()
        process = context.Process(
            target=_worker,
            args=(settings, startup.pki, role, ready[index], hangups),
            name=name,
        )
        process.start()
        return process

    def request_stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    def request_reload(*_: object) -> None:
        nonlocal hangups_received
        hangups_received += 1

    hangups_received = 0
    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGHUP, request_reload)
    workers = [start(i) for i in range(len(roles))]
    advertiser_stop = _advertise_in_thread(settings, startup.ca_sha256)
    announced = failed = False
    try:
        while not stopping:
            time.sleep(0.1 if not announced else 0.2)
            if not announced and all(event.is_set() for event in ready):
                on_ready()
                announced = True
            if hangups_received:
                hangups_received = 0
                _pass_on_hangup(settings, workers, ready, hangups)
            for index, process in enumerate(workers):
                if process.is_alive() or stopping:
                    continue
                fields = {"process": process.name, "exitcode": process.exitcode}
                if not (served[index] or ready[index].is_set()):
                    # It never listened (a port taken, a database it cannot open): started
                    # again it would fail the same way, every second, for ever.
                    log.error("exited before serving; stopping", extra={"fields": fields})
                    failed = stopping = True
                    break
                log.error("exited; restarting", extra={"fields": fields})
                time.sleep(WORKER_RESTART_DELAY)
                workers[index] = start(index)
    finally:
        for process in workers:
            if process.is_alive() and process.pid is not None:
                os.kill(process.pid, signal.SIGTERM)
        for process in workers:
            process.join(settings.shutdown_timeout + 5)
            if process.is_alive():
                process.kill()
        advertiser_stop()
        shutil.rmtree(metrics_dir, ignore_errors=True)
        log.info("stopped")
    return 1 if failed else 0


def _hangup(settings: Settings, contexts: ListenerContexts, renews: bool) -> None:
    if renews:
        try:
            ensure_pki(settings)  # the same paths: it only creates what is missing
        except (OSError, ValueError, ConfigError) as exc:
            log.error("certificates not renewed: %s", exc)
            return
    contexts.reload()


def _pass_on_hangup(
    settings: Settings,
    workers: list[multiprocessing.process.BaseProcess],
    ready: list[multiprocessing.synchronize.Event],
    hangups: Counter,
) -> None:
    """Create what is missing of the certificates, then have each process reload them.
    Only processes that serve get the signal: one still starting up its interpreter has
    no handler for it yet (SIGHUP would end it); it finds ``hangups`` grown once it
    serves, and reloads then."""
    try:
        ensure_pki(settings)
    except (OSError, ValueError, ConfigError) as exc:
        log.error("certificates not renewed: %s", exc)
        return
    with hangups.get_lock():
        hangups.value += 1
    for process, serves in zip(workers, ready, strict=True):
        if serves.is_set() and process.is_alive() and process.pid is not None:
            os.kill(process.pid, signal.SIGHUP)


def _worker(
    settings: Settings,
    pki: Pki,
    role: Role,
    ready: multiprocessing.synchronize.Event,
    hangups: Counter,
) -> None:
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # until _serve's handler: never fatal
    _name_process(multiprocessing.current_process().name)
    logs.configure(settings.log_format, settings.log_level)
    try:
        run_async(
            _serve(settings, pki, "", role, advertise=False, on_ready=ready.set, hangups=hangups)
        )
    except ConfigError as exc:  # a command running alone, a lock file that cannot open
        log.error("%s", exc)
        raise SystemExit(1) from None  # the supervisor stops: it says which process ended


def _name_process(name: str) -> None:
    """A spawned child is ``python -c ...`` to the system; its name (``dls-worker-0``,
    ``dls-admin``) is what ``ps -o comm``, ``top`` and ``pgrep`` then show. Linux keeps
    15 bytes of it; elsewhere the name stays the interpreter's."""
    with suppress(OSError):
        Path("/proc/self/comm").write_text(name[:15])


def _advertise_in_thread(settings: Settings, ca_sha256: str) -> Callable[[], None]:
    """The supervising parent has no event loop of its own; mDNS gets one in a thread."""
    if not settings.mdns_enabled:
        return lambda: None
    loop = asyncio.new_event_loop()
    advertiser = Advertiser(settings, ca_sha256)
    thread = threading.Thread(target=loop.run_forever, name="mdns", daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(advertiser.start(), loop).result(timeout=30)

    def stop() -> None:
        try:
            asyncio.run_coroutine_threadsafe(advertiser.stop(), loop).result(timeout=10)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=5)

    return stop
