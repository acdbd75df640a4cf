"""The OpenAPI 3.1 document, generated from the endpoint table the routes come from."""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web
from pydantic import BaseModel, TypeAdapter
from pydantic.json_schema import models_json_schema

from dls import __version__
from dls.api.routing import Api, Endpoint

__all__ = ["build_document", "openapi_handler"]

_PATH_PARAM = re.compile(r"\{(\w+)\}")
REF = "#/components/schemas/{model}"

ERROR_SCHEMA = {
    "type": "object",
    "required": ["error", "message"],
    "properties": {
        "error": {"type": "string", "description": "Stable code, e.g. not_found."},
        "message": {"type": "string"},
        "details": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "field": {"type": "string"},
                    "message": {"type": "string"},
                    "type": {"type": "string"},
                },
            },
        },
    },
}

_ERRORS = {
    "400": "Malformed JSON or parameter, or a body the client cut short",
    "401": "No valid bearer token",
    "403": "Not permitted for the caller's role in this tenant",
    "404": "Not found, or not visible to the caller (existence is not revealed)",
    "408": "The body did not arrive within body_timeout; the connection is closed",
    "409": "Conflicts with existing data, or another request changed it since it was read",
    "413": "Body larger than the limit",
    "415": "Body is not application/json",
    "422": "Invalid or unknown field (details name each field), or a request refused for "
    "what it would do (error names why: breaks_devices, checksum_mismatch, ...)",
    "429": "Too many attempts; see Retry-After",
}

_BODY_ERRORS = {"408", "413", "415"}  # only where there is a JSON body


def build_document(api: Api) -> dict[str, Any]:
    models = _models(api.endpoints)
    _, schema = models_json_schema([(model, "validation") for model in models], ref_template=REF)
    components = schema.get("$defs", {})
    components["Error"] = ERROR_SCHEMA
    paths: dict[str, dict[str, Any]] = {}
    for endpoint in api.endpoints:
        paths.setdefault(endpoint.path, {})[endpoint.method.lower()] = _operation(
            endpoint, components
        )
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "dls admin API",
            "version": __version__,
            "description": "Tenants, partner administration on behalf of customers, users, "
            "audit and support tickets. Cross-tenant objects answer 404.",
        },
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
    }


def _models(endpoints: list[Endpoint]) -> list[type[BaseModel]]:
    found: dict[str, type[BaseModel]] = {}
    for endpoint in endpoints:
        for model in (endpoint.body, endpoint.query):
            if model is not None:
                found[model.__name__] = model
    return list(found.values())


def _schema_of(annotation: Any, components: dict[str, Any]) -> dict[str, Any]:
    schema = TypeAdapter(annotation).json_schema(ref_template=REF, mode="serialization")
    components.update(schema.pop("$defs", {}))
    return schema


def _operation(endpoint: Endpoint, components: dict[str, Any]) -> dict[str, Any]:
    parameters: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in _PATH_PARAM.findall(endpoint.path)
    ]
    if endpoint.query is not None:
        query_schema = endpoint.query.model_json_schema(ref_template=REF)
        components.update(query_schema.pop("$defs", {}))
        required = set(query_schema.get("required", []))
        for name, prop in query_schema.get("properties", {}).items():
            parameters.append(
                {"name": name, "in": "query", "required": name in required, "schema": prop}
            )
    operation: dict[str, Any] = {
        "operationId": endpoint.operation_id,
        "summary": endpoint.summary,
        "tags": [endpoint.tag],
        "parameters": parameters,
        "responses": {},
    }
    if endpoint.public:
        operation["security"] = []
    if endpoint.body is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": REF.format(model=endpoint.body.__name__)}}
            },
        }
    if endpoint.response is None:
        operation["responses"]["204"] = {"description": "Done"}
    else:
        operation["responses"][str(endpoint.status)] = {
            "description": "Success",
            "content": {"application/json": {"schema": _schema_of(endpoint.response, components)}},
        }
    for status, description in _ERRORS.items():
        if status in _BODY_ERRORS and endpoint.body is None:
            continue
        operation["responses"][status] = {
            "description": description,
            "content": {"application/json": {"schema": {"$ref": REF.format(model="Error")}}},
        }
    operation["responses"]["503"] = {  # from the middleware, for every listener
        "description": "The database cannot answer now; try again after Retry-After",
        "content": {"text/plain": {"schema": {"type": "string"}}},
    }
    return operation


OPENAPI = web.AppKey("openapi", dict)


async def openapi_handler(request: web.Request) -> web.Response:
    return web.json_response(request.app[OPENAPI])
