"""Simulated handsets for end-to-end tests and load tests.

``formats`` reads every vendor file format back into the vendor's flat keys, so a
simulated phone can show which settings it ended up with after provisioning. ``phones``
is the simulated device itself: a vendor's boot sequence, User-Agent and authentication,
made from the vendor profile.
"""

from dls.sim.formats import FormatError, ParsedFile, parse_file, parse_settings
from dls.sim.phones import (
    Connection,
    Exchange,
    SimulatedPhone,
    SimulationError,
    UserAgents,
    load_user_agents,
)

__all__ = [
    "Connection",
    "Exchange",
    "FormatError",
    "ParsedFile",
    "SimulatedPhone",
    "SimulationError",
    "UserAgents",
    "load_user_agents",
    "parse_file",
    "parse_settings",
]
