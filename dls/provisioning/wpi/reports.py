"""What phone reports mean: item sets keyed for comparison, local changes, deployment results.

Pure helpers of the engine, kept apart so the engine module holds only the session rules.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from dls.provisioning.wpi.effects import (
    Conflict,
    DeploymentStatus,
    RecordDeploymentStatus,
    RecordLocalChanges,
)
from dls.provisioning.wpi.items import (
    FILE_DEPLOYMENT_DATE,
    FILE_DEPLOYMENT_NAME,
    FILE_DEPLOYMENT_STATUS,
    FILE_DEPLOYMENT_TIME,
    FILE_DEPLOYMENT_TYPE,
    Item,
    ItemKey,
)

__all__ = ["Inventory", "by_key", "deployment_statuses", "local_changes", "reported"]

Inventory = dict[ItemKey, str]

_FILE_DEPLOYMENT_PREFIX = "file-deployment-"


def reported(items: Iterable[Item]) -> tuple[Item, ...]:
    """The items that carry a value: ``status="failed"`` ones were not read [DG p.81]."""
    return tuple(item for item in items if not item.failed)


def by_key(items: Iterable[Item]) -> Inventory:
    """Items by name and index; a later duplicate wins, as it would on the phone."""
    return {item.key: item.value for item in items}


def local_changes(changed: Iterable[Item], managed: Mapping[ItemKey, str]) -> RecordLocalChanges:
    """Split settings changed on the phone into those that stand and those we overwrite.

    A change stands if the tenant does not manage the item, or if it happens to match the
    managed value; otherwise it is a conflict, and the managed value wins.
    """
    accepted: list[Item] = []
    conflicts: list[Conflict] = []
    for item in changed:
        wanted = managed.get(item.key)
        if wanted is None or wanted == item.value:
            accepted.append(item)
        else:
            conflicts.append(Conflict(item.key, item.value))
    return RecordLocalChanges(tuple(accepted), tuple(conflicts))


def deployment_statuses(items: Iterable[Item]) -> list[RecordDeploymentStatus]:
    """One result per file of a ``status`` message, its items matched by index [DG p.54]."""
    files: dict[int | None, dict[str, str]] = {}
    for item in reported(items):
        if item.name.startswith(_FILE_DEPLOYMENT_PREFIX):
            files.setdefault(item.index, {})[item.name] = item.value
    results = []
    for index, fields in files.items():
        status = fields.get(FILE_DEPLOYMENT_STATUS)
        if status is None:
            continue
        results.append(
            RecordDeploymentStatus(
                index=index,
                file_name=fields.get(FILE_DEPLOYMENT_NAME),
                file_type=fields.get(FILE_DEPLOYMENT_TYPE),
                # Only "ok" is success; any undocumented value counts as a failure.
                status=DeploymentStatus.OK
                if status.strip() == DeploymentStatus.OK
                else DeploymentStatus.FAILED,
                date=fields.get(FILE_DEPLOYMENT_DATE),
                time=fields.get(FILE_DEPLOYMENT_TIME),
            )
        )
    return results
