"""Failed-login limits per account and per source address, shared by all instances."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import delete, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from dls.auth.models import LoginFailure
from dls.db.types import utcnow

__all__ = ["WINDOW", "clear_failures", "login_blocked", "record_failure"]

WINDOW = dt.timedelta(minutes=15)
MAX_PER_ACCOUNT = 5  # failures in WINDOW before the account refuses further attempts
MAX_PER_ADDRESS = 20  # an address guessing across many accounts is stopped as well


async def login_blocked(session: AsyncSession, username: str, address: str) -> int:
    """Seconds until another attempt is allowed, or 0."""
    since = utcnow() - WINDOW
    rows = (
        await session.execute(
            select(LoginFailure.username, LoginFailure.address, LoginFailure.at)
            .where(LoginFailure.at > since)
            .where(or_(LoginFailure.username == username, LoginFailure.address == address))
            .order_by(LoginFailure.at)
        )
    ).all()
    by_account = [at for user, _, at in rows if user == username]
    by_address = [at for _, addr, at in rows if addr == address]
    waits = []
    if len(by_account) >= MAX_PER_ACCOUNT:
        waits.append(by_account[-MAX_PER_ACCOUNT] + WINDOW)
    if len(by_address) >= MAX_PER_ADDRESS:
        waits.append(by_address[-MAX_PER_ADDRESS] + WINDOW)
    if not waits:
        return 0
    return max(1, int((max(waits) - utcnow()).total_seconds()) + 1)


async def record_failure(session: AsyncSession, username: str, address: str) -> None:
    session.add(LoginFailure(username=username[:128], address=address[:64]))
    # Keep the table small: anything older than the window no longer counts.
    await session.execute(delete(LoginFailure).where(LoginFailure.at < utcnow() - WINDOW))


async def clear_failures(session: AsyncSession, username: str) -> None:
    await session.execute(delete(LoginFailure).where(LoginFailure.username == username))
