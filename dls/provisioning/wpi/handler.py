"""The WPI HTTP endpoints: ``POST /DeploymentService/LoginService`` and the DCMP poll.

The request path reads top to bottom, each failure an early return, cheapest first:
size (413) and content type (415) before a byte is read, admission (503 with
``Retry-After``) before any work, the hardened parser (400 with a short fixed reason,
logged once per reason) before the database, then :func:`exchange`. Answers are built
as bytes and sent with ``Content-Length``: firmware up to V2R2 cannot read chunked
bodies [DG p.12/14].
"""

from __future__ import annotations

import logging
import re

from aiohttp import web
from sqlalchemy import exists, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm.exc import StaleDataError

from dls.db.types import utcnow
from dls.db.unavailable import database_unavailable, describe
from dls.db.writes import WriteConflict
from dls.devices.models import Device
from dls.devices.unify import ACTIVE_JOB_STATES, DeviceJob
from dls.metrics import WPI_INTERACTIONS, WPI_OPEN_INTERACTIONS, WPI_REFUSED, WPI_RETRY_AFTER
from dls.provisioning.wpi.dispatch import BACKGROUND, Background
from dls.provisioning.wpi.exchange import exchange
from dls.provisioning.wpi.identity import plain_mac
from dls.provisioning.wpi.limits import RETRY_AFTER_MIN
from dls.provisioning.wpi.messages import parse_request
from dls.provisioning.wpi.runtime import WPI, WpiRuntime, build_runtime
from dls.provisioning.wpi.xml import MAX_BODY_BYTES, WpiFormatError
from dls.request_body import BodyRefused, read_body
from dls.services import Services

__all__ = [
    "COOKIE",
    "DCMP_PATH",
    "LOGIN_SERVICE_PATH",
    "dcmp_contact_me",
    "install",
    "login_service",
]

log = logging.getLogger("dls.wpi")

LOGIN_SERVICE_PATH = "/DeploymentService/LoginService"  # [PG capture, DLSir, GS3, GS5]
DCMP_PATH = "/dcmp/contact-me"  # [WIKI-DCMP]
# The original DLS's cookie [D GS3]; phones return it on reply-to messages [DG p.13/28].
COOKIE = "JSESSIONID"
COOKIE_PATH = "/DeploymentService"
XML_TYPES = frozenset({"text/xml", "application/xml"})  # phones send text/xml [DG p.12]
_TOKEN = re.compile(r"[A-Za-z0-9_-]{16,64}")  # ours are 32; anything else names no session
# Seconds of a refused phone's wait for which its connection is kept: about as long as
# HTTP clients keep an idle connection (aiohttp's client: 15 s). A guess for phones.
KEEP_CONNECTION_FOR = 15


def _plain(status: int, text: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, text=text, headers=headers)


def _refused(
    runtime: WpiRuntime, reason: str, retry_after: int = RETRY_AFTER_MIN, *, close: bool = False
) -> web.Response:
    """503 with ``Retry-After``; ``close``: let the phone's connection go."""
    WPI_REFUSED.labels(runtime.listener, reason).inc()
    response = _plain(503, "busy, retry later", {"Retry-After": str(retry_after)})
    if close:
        response.force_close()
    return response


async def login_service(request: web.Request) -> web.Response:
    runtime = request.app[WPI]
    length = request.content_length
    if length is not None and length > MAX_BODY_BYTES:
        return _plain(413, "body too large")
    if request.content_type not in XML_TYPES:
        return _plain(415, "send text/xml")
    # The whole body before a place: a request still arriving (a slow link, or a client
    # that never finishes) holds its connection, not one of the places that bound the
    # work under way, which a few hundred of them held from every phone.
    try:
        body = await read_body(request, runtime.services.settings.body_timeout)
    except BodyRefused as refused:
        return refused.response()
    token = request.cookies.get(COOKIE)
    if token is not None and not _TOKEN.fullmatch(token):
        token = None
    continuing = token is not None
    ticket = runtime.admission.admit(continuing=continuing)
    if ticket is None:
        runtime.quiet.warning("WPI overloaded: requests refused with 503")
        # A phone in the middle of an interaction is told the shortest wait: its session
        # is open, and what it already did is lost if the session times out. A phone
        # turned away at the door is told its turn; if that is far off it is let go, so
        # a boot storm does not hold thousands of idle TLS connections, and if it is
        # near its connection stays for it (a new handshake costs more than waiting).
        if continuing:
            return _refused(runtime, "continuing")
        turn = runtime.admission.retry_after()
        WPI_RETRY_AFTER.labels(runtime.listener).observe(turn)
        return _refused(runtime, "opening", turn, close=turn > KEEP_CONNECTION_FOR)
    with ticket:
        try:
            message = parse_request(body)
        except WpiFormatError as error:
            runtime.quiet.warning("malformed WPI request: " + error.reason, remote=request.remote)
            return _plain(400, error.reason)
        try:
            answer = await exchange(runtime, request, message, token)
        except WriteConflict:
            # Messages of one phone kept racing each other: it retries, and finds out.
            log.warning("WPI message kept conflicting with another; answering 503")
            return _refused(runtime, "conflict")
        except (SQLAlchemyError, OSError) as exc:
            _database_failed("WPI exchange", exc)
            return _refused(runtime, "database")
    if answer.ended:
        runtime.admission.finished()
        WPI_INTERACTIONS.labels(runtime.listener).inc()
    WPI_OPEN_INTERACTIONS.labels(runtime.listener).set(runtime.admission.open_interactions)
    response = web.Response(body=answer.body, content_type="text/xml", charset="utf-8")
    if answer.new_token is not None:
        response.set_cookie(COOKIE, answer.new_token, path=COOKIE_PATH, secure=True, httponly=True)
    elif answer.clear_cookie:
        response.del_cookie(COOKIE, path=COOKIE_PATH)
    return response


async def dcmp_contact_me(request: web.Request) -> web.Response:
    """200: nothing pending; 202: open a solicited session [WIKI-DCMP]. Never a body.

    Unauthenticated by design of DCMP, so it reveals only "pending or not", and an
    unknown MAC looks exactly like a known one with nothing pending.
    """
    runtime = request.app[WPI]
    if not runtime.dcmp_polls.allow(request.remote or "-"):
        return web.Response(status=429, headers={"Retry-After": "1"})
    mac = plain_mac(request.query.get("device-id"))
    if mac is None:
        return web.Response(status=400)
    statement = select(
        exists().where(
            Device.mac == mac,
            Device.vendor == "unify",
            DeviceJob.device_id == Device.id,
            DeviceJob.state.in_(ACTIVE_JOB_STATES),
            DeviceJob.expires_at > utcnow(),
        )
    )
    try:
        async with runtime.services.sessions() as session:
            pending = bool(await session.scalar(statement))
    except (SQLAlchemyError, OSError) as exc:
        _database_failed("DCMP poll", exc)
        return _refused(runtime, "database")
    return web.Response(status=202 if pending else 200)


def _database_failed(what: str, exc: Exception) -> None:
    """Logged like the middleware logs any request's (``dls.middleware``): the database
    being away is one warning line per request, anything else a traceback. A row's version
    counter refusing a change (an admin changed the device meanwhile) is a race, not a
    bug: a warning too. The phone is answered 503 either way: it comes back, and the retry
    decides again."""
    if database_unavailable(exc):
        log.warning("%s: database unavailable: %s; answering 503", what, describe(exc))
    elif isinstance(exc, StaleDataError):
        log.warning("%s: a row changed by another request meanwhile; answering 503", what)
    else:
        log.error("%s failed on the database; answering 503", what, exc_info=exc)


def install(app: web.Application, services: Services, *, secure: bool) -> None:
    """Serve WPI on ``app``; the device listener also runs the background loops."""
    runtime = build_runtime(services, secure=secure)
    app[WPI] = runtime
    app.router.add_post(LOGIN_SERVICE_PATH, login_service)
    if secure:
        return
    app.router.add_get(DCMP_PATH, dcmp_contact_me)
    background = Background(runtime)
    app[BACKGROUND] = background
    app.on_startup.append(background.start)
    app.on_cleanup.append(background.stop)
