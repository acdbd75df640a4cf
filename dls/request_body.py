"""A request's whole body, or the reason there is none: too large, too slow, cut short.

Every reader of a whole body (a WPI message, a Poly upload, an admin's JSON) refuses the
same three ways, and reads before its request takes anything others wait for (one of
WPI's places, SQLite's write lock), so a slow sender holds only its own connection.
A client that hangs up mid-body raises ConnectionResetError, as a database that drops
its connection does: named here, it is not taken for a database failure.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

__all__ = ["BodyRefused", "read_body"]


class BodyRefused(Exception):
    """Why a body could not be read; each reader answers it in its own format."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code  # stable, for the admin API's error bodies
        self.message = message

    def response(self) -> web.Response:
        """Plain text, and the connection closed: the rest of the body may still come."""
        response = web.Response(status=self.status, text=self.message + "\n")
        response.force_close()
        return response


async def read_body(request: web.BaseRequest, seconds: float) -> bytes:
    """The whole body, up to the application's ``client_max_size``, within ``seconds``."""
    try:
        async with asyncio.timeout(seconds):
            return await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise BodyRefused(413, "too_large", "request body too large") from None
    except TimeoutError:
        raise BodyRefused(408, "timeout", "request body not received in time") from None
    except ConnectionError:  # the client hung up
        raise BodyRefused(400, "incomplete_body", "request body ended early") from None
