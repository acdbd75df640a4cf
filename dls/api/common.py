"""The admin API's endpoint table, shared by the modules that declare endpoints."""

from __future__ import annotations

from dls.api.routing import Api

__all__ = ["API_PREFIX", "api"]

API_PREFIX = "/api/v1"
api = Api(API_PREFIX)
