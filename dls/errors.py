"""Errors the domain services raise, independent of how they reach a caller."""

from __future__ import annotations

__all__ = ["DomainError"]


class DomainError(Exception):
    """A request that breaks a rule of the domain; ``field`` names what to fix.

    The admin API answers 422 naming the field (409 when ``conflict``); the CLI prints it.
    """

    def __init__(self, field: str, message: str, *, conflict: bool = False) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
        self.conflict = conflict
