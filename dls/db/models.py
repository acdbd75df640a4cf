"""Imports every module that declares tables, so ``Base.metadata`` is complete.

Alembic's environment and the models-versus-migrations test import this module.
"""

from __future__ import annotations

from dls import audit
from dls.auth import models as auth_models
from dls.db.base import Base
from dls.devices import models as device_models
from dls.devices import unify as unify_models
from dls.firmware import models as firmware_models
from dls.tenancy import models as tenancy_models
from dls.tickets import models as ticket_models

__all__ = [
    "Base",
    "audit",
    "auth_models",
    "device_models",
    "firmware_models",
    "tenancy_models",
    "ticket_models",
    "unify_models",
]
