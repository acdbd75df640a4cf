"""Authorisation and auditing as handlers use them: one call each."""

from __future__ import annotations

from typing import Any, Protocol, TypeVar

from dls import audit
from dls.api.routing import MAX_ROW_ID, ApiError, Call
from dls.devices.models import Device
from dls.tenancy.policy import Access, is_allowed, is_operator, resolve_access

__all__ = ["owned", "path_id", "record", "require", "require_operator"]


async def require(call: Call, tenant_id: str, resource: str, action: str) -> Access:
    """The caller's access to ``tenant_id`` if the matrix permits ``action``, else an error.

    A tenant the caller has no standing in answers 404, whatever the action, so its
    existence is not revealed. A caller who may see the tenant but not do this gets 403.
    """
    access = await resolve_access(call.session, call.user, call.tenant, tenant_id, call.now)
    if access is None:
        raise ApiError.not_found("tenant")
    if not is_allowed(access.role, resource, action):
        if is_allowed(access.role, "tenant", "read"):
            raise ApiError.forbidden()
        raise ApiError.not_found("tenant")
    return access


class _TenantOwned(Protocol):
    tenant_id: str


Owned = TypeVar("Owned", bound=_TenantOwned)


def path_id(text: str) -> int | None:
    """The row id a path parameter names, or None if no row can have it: not ASCII digits
    (``str.isdigit`` accepts "²", which ``int`` refuses) or past the column's range (which
    the database driver refuses). Callers answer None with their usual 404."""
    if not (text.isascii() and text.isdigit() and len(text) <= 10):
        return None
    value = int(text)
    return value if 0 < value <= MAX_ROW_ID else None


async def owned(
    call: Call, model: type[Owned], key: str | int | None, tenant_id: str, what: str
) -> Owned:
    """The ``model`` row with primary key ``key`` (a path parameter or an id) if it belongs
    to ``tenant_id``; otherwise 404, the same answer as for a row that does not exist, so
    ids of other tenants cannot be probed."""
    if isinstance(key, str):
        key = path_id(key)
    elif key is not None and not 0 < key <= MAX_ROW_ID:
        key = None  # an id from a request body, past what the column holds
    found = await call.session.get(model, key) if key is not None else None
    if found is None or found.tenant_id != tenant_id:
        raise ApiError.not_found(what)
    return found


async def device_in_path(call: Call, resource: str, action: str) -> tuple[Access, Device]:
    """The caller's access for ``action`` on ``resource`` in the path's tenant, and the
    path's device in that tenant (404 otherwise, as for one that does not exist)."""
    access = await require(call, call.params["tenant_id"], resource, action)
    device = await owned(call, Device, call.params["device_id"], access.tenant.tenant_id, "device")
    return access, device


def require_operator(call: Call) -> None:
    if not is_operator(call.user, call.tenant):
        raise ApiError.forbidden("operators only")


def record(
    call: Call,
    access: Access | None,
    action: str,
    object_type: str,
    object_id: str | int,
    changes: dict[str, Any] | None = None,
    *,
    target_tenant_id: str | None = None,
) -> None:
    """Audit a write in the call's transaction."""
    via = (
        access.via
        if access is not None
        else (audit.Via.OPERATOR if is_operator(call.user, call.tenant) else audit.Via.DIRECT)
    )
    audit.record(
        call.session,
        actor_user_id=call.user.id,
        actor_tenant_id=call.tenant.tenant_id,
        target_tenant_id=target_tenant_id or (access.tenant.tenant_id if access else None),
        via=via,
        action=action,
        object_type=object_type,
        object_id=object_id,
        changes=changes,
        request_id=call.request_id,
        source_ip=call.remote,
    )
