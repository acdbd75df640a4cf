"""Pydantic's validation errors in the words dls reports them in everywhere.

Settings, both kinds of vendor profile, the firmware catalog, resolved device settings
and the admin API each refuse a document; reading the errors in one place keeps their
wording alike: a name the model lacks is an "unknown" key (or field, or setting), and a
validator's own sentence comes without the "Value error, " pydantic puts before it.
"""

from __future__ import annotations

from typing import NamedTuple

from pydantic import ValidationError

__all__ = ["Problem", "problems_of"]

_VALIDATOR_PREFIX = "Value error, "


class Problem(NamedTuple):
    loc: tuple[str | int, ...]  # pydantic's location: keys and list indexes
    message: str
    type: str  # pydantic's error type, e.g. "missing", "extra_forbidden", "value_error"

    @property
    def where(self) -> str:
        """The location dotted (``lines.0.port``); empty for the document as a whole."""
        return ".".join(str(part) for part in self.loc)


def problems_of(exc: ValidationError, unknown: str = "unknown key") -> list[Problem]:
    """Every problem ``exc`` holds, in pydantic's order; ``unknown`` names an extra key."""
    return [
        Problem(
            tuple(error["loc"]),
            unknown
            if error["type"] == "extra_forbidden"
            else error["msg"].removeprefix(_VALIDATOR_PREFIX),
            error["type"],
        )
        for error in exc.errors(include_url=False, include_input=False)
    ]
