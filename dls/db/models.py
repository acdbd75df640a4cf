"""Imports every module that declares tables, so ``Base.metadata`` is complete.

Alembic's environment and the models-versus-migrations test import this module.
"""

from __future__ import annotations

from dls.db.base import Base

__all__ = ["Base"]
