"""WPI items: the name/index/value triple both directions carry, and the names we act on.

Item names are spelled exactly as the Developer's Guide spells them (reference §10-§12),
so a search for the spec term lands here. Only names the protocol code itself reads or
writes are listed; the settings a tenant manages are data (the Unify profile), not code.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "CONFIGURATION_ATTACHED_FLAG",
    "CONFIGURATION_ATTACHED_NUMBER",
    "CONFIGURATION_CHANGED_FLAG",
    "FACTORY_RESET_PASSWORD",
    "FILE_ACTION",
    "FILE_DEPLOYMENT_DATE",
    "FILE_DEPLOYMENT_NAME",
    "FILE_DEPLOYMENT_STATUS",
    "FILE_DEPLOYMENT_TIME",
    "FILE_DEPLOYMENT_TYPE",
    "FILE_HTTPS_BASE_URL",
    "FILE_PRIORITY",
    "FILE_SW_TYPE",
    "FILE_SW_VERSION",
    "FILE_TYPE",
    "MAC_ADDR",
    "RESTART_PASSWORD",
    "RESTART_TYPE",
    "RESTART_TYPE_FACTORY_RESET",
    "SECRET_ITEMS",
    "SEND_SOLICITED",
    "SOFTWARE_VERSION",
    "Item",
    "ItemKey",
]

# Identity [DG p.27/33]
MAC_ADDR = "mac-addr"
SOFTWARE_VERSION = "software-version"

# local-changes flags, V2R2 on [DG p.40]
CONFIGURATION_CHANGED_FLAG = "configuration-changed-flag"
CONFIGURATION_ATTACHED_FLAG = "configuration-attached-flag"
CONFIGURATION_ATTACHED_NUMBER = "configuration-attached-number"

# CleanUp [DG p.62/74]
SEND_SOLICITED = "send-solicited"

# Restart and factory reset [DG p.51, PG]
RESTART_TYPE = "restart-type"
RESTART_TYPE_FACTORY_RESET = "FactoryReset"
RESTART_PASSWORD = "restart-password"  # noqa: S105 - an item name
# A documented fixed value every phone accepts, not a credential of ours [DG p.51].
FACTORY_RESET_PASSWORD = "124816"  # noqa: S105

# FileDeployment and SoftwareDeployment over HTTPS [DG p.53-57]
FILE_HTTPS_BASE_URL = "file-https-base-url"
FILE_TYPE = "file-type"
FILE_ACTION = "file-action"
FILE_SW_TYPE = "file-sw-type"
FILE_SW_VERSION = "file-sw-version"
FILE_PRIORITY = "file-priority"

# The phone's `status` report after a deployment [DG p.54]
FILE_DEPLOYMENT_NAME = "file-deployment-name"
FILE_DEPLOYMENT_TYPE = "file-deployment-type"
FILE_DEPLOYMENT_STATUS = "file-deployment-status"
FILE_DEPLOYMENT_DATE = "file-deployment-date"
FILE_DEPLOYMENT_TIME = "file-deployment-time"

# Values never to log or echo (reference §14); phones report some of them in ReadAllItems.
SECRET_ITEMS = frozenset({"sip-pwd", "user-pwd", "admin-pwd", "ssh-password", "file-pwd"})


@dataclass(frozen=True, slots=True)
class ItemKey:
    """What identifies an item on a phone: its name, plus the index for list items."""

    name: str
    index: int | None = None


@dataclass(frozen=True, slots=True)
class Item:
    """One ``<Item>``: ``failed`` marks an item the phone could not read or write [DG p.81]."""

    name: str
    value: str = ""
    index: int | None = None
    failed: bool = False

    @property
    def key(self) -> ItemKey:
        return ItemKey(self.name, self.index)
