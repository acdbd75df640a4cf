"""What the server knows about one device, frozen for one engine decision.

The caller reads it from the database (and caches) before calling the engine; the engine
only reads it. Keeping it a plain value is what lets the engine be pure: the same
snapshot, state and message always give the same answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from dls.provisioning.wpi.items import Item
from dls.provisioning.wpi.messages import FileDeployment, SoftwareDeployment

__all__ = ["DeviceSnapshot", "DeviceStanding", "Job", "JobKind"]


class DeviceStanding(StrEnum):
    """How far the server trusts and manages the device behind a MAC."""

    UNKNOWN = "unknown"  # no such device: record it as unclaimed, answer CleanUp, no secrets
    UNBOUND = "unbound"  # registered but bound to no tenant/user: inventory only, no jobs
    BOUND = "bound"  # managed: desired items are written and jobs delivered


class JobKind(StrEnum):
    PUSH_CONFIG = "push-config"  # write the desired items that differ from the inventory
    RESTART = "restart"
    FACTORY_RESET = "factory-reset"
    FILE_DEPLOYMENT = "file-deployment"
    SOFTWARE_DEPLOYMENT = "software-deployment"


@dataclass(frozen=True, slots=True)
class Job:
    """One queued piece of work; ``deployment`` is the command for the two deployment kinds."""

    job_id: str
    kind: JobKind
    deployment: FileDeployment | SoftwareDeployment | None = None

    def __post_init__(self) -> None:
        expected = {
            JobKind.FILE_DEPLOYMENT: FileDeployment,
            JobKind.SOFTWARE_DEPLOYMENT: SoftwareDeployment,
        }.get(self.kind)
        if expected is None and self.deployment is not None:
            raise ValueError(f"a {self.kind} job carries no deployment")
        if expected is not None and not isinstance(self.deployment, expected):
            raise ValueError(f"a {self.kind} job needs a {expected.__name__}")


@dataclass(frozen=True, slots=True)
class DeviceSnapshot:
    """The device as the database saw it when this message arrived.

    ``desired_items`` are the WPI items the tenant manages for this phone, already rendered
    from the settings model. ``inventory`` is the last reported item set, ``None`` if the
    phone was never read. ``jobs`` are pending (not yet accepted, failed or up to date), in
    the order the caller wants them delivered. ``config_revision`` changes whenever
    ``desired_items`` do; the engine uses it to tell whether an accepted write still matches.
    """

    standing: DeviceStanding
    desired_items: tuple[Item, ...] = ()
    inventory: tuple[Item, ...] | None = None
    jobs: tuple[Job, ...] = ()
    config_revision: str = ""
