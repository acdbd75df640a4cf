"""Declared admin endpoints: one table drives the routes, the checks and the OpenAPI document.

Every endpoint names its body, query and response models. The wrapper authenticates the
bearer token, rejects a bad body before the handler runs (415, 400, 422 naming the field),
runs the handler in one database transaction (read-only unless the endpoint writes; an
upload's handler runs after it, see ``Endpoint.streams_body``) and serialises its answer
through the declared response model, so a handler cannot leak a field the model does not
declare. Because the OpenAPI document is generated from the same table, it cannot drift
from the routes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, cast

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.exc import StaleDataError

from dls.auth.tokens import authenticate_token
from dls.db.engine import WRITER, read_only
from dls.db.types import utcnow
from dls.errors import DomainError
from dls.logs import REQUEST_ID
from dls.problems import problems_of
from dls.request_body import BodyRefused, read_body
from dls.services import SERVICES, Services
from dls.tenancy.models import Tenant, User

__all__ = ["MAX_ROW_ID", "Api", "ApiError", "Call", "Endpoint", "RequestModel", "RowId"]

JSON_TYPE = "application/json"


MAX_ROW_ID = 2**31 - 1  # ids and version counters are INTEGER columns: 32 bits on PostgreSQL

# A row's id in a body or query. Past the column's range it names no row, but reached the
# driver, which refused it: a 500 (SQLite's from 2**63, PostgreSQL's from 2**31).
RowId = Annotated[int, Field(ge=1, le=MAX_ROW_ID)]


class RequestModel(BaseModel):
    """Base of every request body and query: unknown fields are an error, not ignored."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)


class ApiError(Exception):
    """An answer other than success: status, a stable code and a human message."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        details: Any = None,
        headers: dict[str, str] | None = None,
        close: bool = False,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.headers = headers or {}
        self.close = close  # end the connection after answering

    @classmethod
    def not_found(cls, what: str = "resource") -> ApiError:
        # One message for "does not exist" and "not yours": existence is not revealed.
        return cls(404, "not_found", f"{what} not found")

    @classmethod
    def forbidden(cls, message: str = "not permitted for your role") -> ApiError:
        return cls(403, "forbidden", message)

    @classmethod
    def conflict(cls, message: str) -> ApiError:
        return cls(409, "conflict", message)

    @classmethod
    def invalid(cls, field_name: str, message: str) -> ApiError:
        return cls(
            422,
            "validation_error",
            f"{field_name}: {message}",
            details=[{"field": field_name, "message": message, "type": "value_error"}],
        )

    @classmethod
    def refused(cls, exc: ValidationError, within: str = "") -> ApiError:
        """A body or query that fails its model: every problem, each naming its field
        (below ``within``, a prefix such as ``settings.``), as a 422."""
        details = [
            {
                "field": within + problem.where if problem.where else within.rstrip(".") or "body",
                "message": problem.message,
                "type": problem.type,
            }
            for problem in problems_of(exc, unknown="unknown field")
        ]
        summary = "; ".join(f"{d['field']}: {d['message']}" for d in details)
        return cls(422, "validation_error", summary, details=details)


@dataclass(slots=True)
class Call:
    """One authenticated API call, as a handler sees it."""

    request: web.Request
    services: Services
    session: AsyncSession
    user: User
    tenant: Tenant  # the caller's home tenant
    params: dict[str, str]
    body: Any
    query: Any
    now: dt.datetime = field(default_factory=utcnow)

    @property
    def request_id(self) -> str:
        return REQUEST_ID.get()

    @property
    def remote(self) -> str | None:
        return self.request.remote

    @contextlib.asynccontextmanager
    async def writing(self) -> AsyncIterator[Call]:
        """This call with a session of its own, in a short transaction that holds the
        write lock (SQLite) until it commits: for a handler declared ``writes=False``
        whose slow part (a password hash, a key pair, an upload) must not hold it. The
        caller is authenticated again from this transaction's rows, and the handler
        decides its access again with the call it yields: what changed while the slow
        part ran (a revoked token, a withdrawn opt-in) is seen before anything is
        written."""
        async with self.services.sessions() as session, session.begin():
            await session.connection(execution_options=WRITER)
            if self.user is None:  # a public endpoint (login)
                yield dataclasses.replace(self, session=session)
                return
            user, tenant = await _authenticate(self.request, session, public=False)
            yield dataclasses.replace(self, session=session, user=user, tenant=tenant)


Handler = Callable[[Call], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class Endpoint:
    method: str
    path: str
    handler: Handler
    summary: str
    tag: str
    body: type[BaseModel] | None
    query: type[BaseModel] | None
    response: Any  # a model class, list[Model], or None for 204
    status: int
    public: bool  # no bearer token needed (login)
    # Whether the handler writes: a transaction that takes SQLite's write lock up front,
    # or a read-only one that never takes it (dls.db.engine.read_only).
    writes: bool
    # Whether the handler reads the request body itself, for as long as it takes (an
    # image upload): the request's transaction ends once the caller is authenticated, and
    # the handler writes in Call.writing(). An idle transaction held for minutes meets
    # PostgreSQL's idle_in_transaction_session_timeout and holds a pooled connection; on
    # SQLite its snapshot keeps checkpoints from emptying the WAL.
    streams_body: bool = False

    @property
    def operation_id(self) -> str:
        return self.handler.__name__


class Api:
    """The admin API's endpoint table."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.endpoints: list[Endpoint] = []

    def route(
        self,
        method: str,
        path: str,
        *,
        summary: str,
        tag: str,
        body: type[BaseModel] | None = None,
        query: type[BaseModel] | None = None,
        response: Any = None,
        status: int = 200,
        public: bool = False,
        writes: bool | None = None,
        streams_body: bool = False,
    ) -> Callable[[Handler], Handler]:
        """``writes`` defaults to whether the method is not GET."""
        if streams_body and (writes is not False or body is not None):
            raise ValueError("a handler streaming its body reads it itself and writes later")

        def register(handler: Handler) -> Handler:
            self.endpoints.append(
                Endpoint(
                    method,
                    self.prefix + path,
                    handler,
                    summary,
                    tag,
                    body,
                    query,
                    response,
                    status if response is not None else 204,
                    public,
                    method != "GET" if writes is None else writes,
                    streams_body,
                )
            )
            return handler

        return register

    def install(self, app: web.Application) -> None:
        for endpoint in self.endpoints:
            app.router.add_route(endpoint.method, endpoint.path, _wrap(endpoint))


def _wrap(endpoint: Endpoint) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    adapter = TypeAdapter(endpoint.response) if endpoint.response is not None else None

    async def handle(request: web.Request) -> web.StreamResponse:
        try:
            services = request.app[SERVICES]
            # The whole body arrives before the transaction begins: a writer's holds
            # SQLite's one write lock, which an upload over a slow link held for as long
            # as it took, stalling the device path's writes and every other admin.
            received = await _receive(request, endpoint)
            async with (
                services.sessions() as session,
                session.begin(),
                _transaction(session, endpoint.writes),
            ):
                # Authenticate first: an anonymous caller learns nothing about the body's rules.
                user, tenant = await _authenticate(request, session, endpoint.public)
                if any(_NUL in value for value in request.match_info.values()):
                    raise ApiError.not_found()  # %00 in a path names nothing
                body = _parse_body(request, endpoint.body, received)
                query = _parse_query(request, endpoint.query)
                call = Call(
                    request,
                    services,
                    session,
                    user,
                    tenant,  # type: ignore[arg-type]
                    dict(request.match_info),
                    body,
                    query,
                )
                if not endpoint.streams_body:
                    return _answer(endpoint, adapter, await endpoint.handler(call))
            call.session = _NO_TRANSACTION
            return _answer(endpoint, adapter, await endpoint.handler(call))
        except ApiError as error:
            return error_response(error)
        except StaleDataError:
            # A version counter (settings documents, devices, rollouts) says another
            # request changed the row since this one read it: nothing was written.
            return error_response(
                ApiError.conflict("changed by another request meanwhile; read it again")
            )
        except DomainError as error:
            if error.conflict:
                return error_response(ApiError.conflict(str(error)))
            return error_response(ApiError.invalid(error.field, error.message))

    handle.__name__ = endpoint.operation_id
    return handle


def _answer(endpoint: Endpoint, adapter: TypeAdapter[Any] | None, result: Any) -> web.Response:
    """The handler's result through the declared response model (inside the request's
    transaction, where it has one: attributes may still load)."""
    if adapter is None:
        return web.Response(status=204)
    payload = adapter.dump_json(adapter.validate_python(result, from_attributes=True))
    return web.Response(body=payload, status=endpoint.status, content_type=JSON_TYPE)


class _NoTransaction:
    """``Call.session`` for a handler that streams its body: the request's transaction
    has ended, so any use is a mistake, caught at its first use rather than by a
    transaction opened there and left open."""

    def __getattr__(self, name: str) -> Any:
        raise RuntimeError(f"session.{name}: this call has no transaction; use call.writing()")


_NO_TRANSACTION = cast(AsyncSession, _NoTransaction())


def error_response(error: ApiError) -> web.Response:
    body: dict[str, Any] = {"error": error.code, "message": error.message}
    if error.details is not None:
        body["details"] = error.details
    response = web.json_response(body, status=error.status, headers=error.headers)
    if error.close:
        response.force_close()
    return response


async def _authenticate(
    request: web.Request, session: AsyncSession, public: bool
) -> tuple[User | None, Tenant | None]:
    if public:
        return None, None
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    found = None
    if scheme.lower() == "bearer" and token:
        found = await authenticate_token(session, token.strip())
    if found is None:
        raise ApiError(
            401,
            "unauthorized",
            "a valid bearer token is required",
            headers={"WWW-Authenticate": 'Bearer realm="dls"'},
        )
    user, tenant, _ = found
    return user, tenant


@contextlib.asynccontextmanager
async def _transaction(session: AsyncSession, writes: bool) -> AsyncIterator[None]:
    if writes:
        await session.connection(execution_options=WRITER)
        yield
    else:
        async with read_only(session):
            yield


async def _receive(request: web.Request, endpoint: Endpoint) -> bytes | ApiError | None:
    """The body, read in full (up to the application's limit), or the error to answer
    once the caller is authenticated; None when there is nothing to read: no body model,
    another media type (415 follows), or no credentials at all (401 follows, and an
    anonymous caller does not get to upload first)."""
    if endpoint.body is None or request.content_type != JSON_TYPE:
        return None
    if not endpoint.public and "Authorization" not in request.headers:
        return None
    try:
        return await read_body(request, request.app[SERVICES].settings.body_timeout)
    except BodyRefused as refused:
        return ApiError(refused.status, refused.code, refused.message, close=True)


def _parse_body(
    request: web.Request, model: type[BaseModel] | None, received: bytes | ApiError | None
) -> Any:
    if model is None:
        return None
    if request.content_type != JSON_TYPE:
        raise ApiError(415, "unsupported_media_type", f"send {JSON_TYPE}")
    if isinstance(received, ApiError):
        raise received
    try:
        data = json.loads(received or b"")
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, "bad_json", f"body is not valid JSON: {exc}") from None
    except RecursionError:  # a few thousand nested arrays: the parser recurses per level
        raise ApiError(400, "bad_json", "body is nested too deeply") from None
    _refuse_nul(data, ())
    return _validate(model, data)


def _parse_query(request: web.Request, model: type[BaseModel] | None) -> Any:
    if model is None:
        if request.query:
            name = next(iter(request.query))
            raise ApiError.invalid(name, "unknown query parameter")
        return None
    query = dict(request.query)
    _refuse_nul(query, ())
    return _validate(model, query)


# PostgreSQL's text types cannot hold NUL; SQLite's can. Refused on both, naming the
# field, where PostgreSQL alone answered 500 (its driver refuses the statement).
_NUL = "\x00"


def _refuse_nul(data: Any, location: tuple[str | int, ...]) -> None:
    # A loop, not recursion: a body may nest as deep as the JSON parser went.
    pending: list[tuple[Any, tuple[str | int, ...]]] = [(data, location)]
    while pending:
        value, where = pending.pop()
        if isinstance(value, str):
            if _NUL in value:
                field = ".".join(str(part) for part in where) or "body"
                raise ApiError.invalid(field, "NUL characters are not allowed")
        elif isinstance(value, dict):
            for key, item in value.items():
                pending.append((key, where))
                pending.append((item, (*where, key)))
        elif isinstance(value, list):
            pending.extend((item, (*where, index)) for index, item in enumerate(value))


def _validate(model: type[BaseModel], data: Any) -> BaseModel:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ApiError.refused(exc) from None
