"""The OpenAPI 3.1 document, generated from the endpoint declarations.

Nothing here is written by hand per endpoint: :func:`openapi_document` walks the
:class:`~oauthproxy.admin.endpoint.Endpoint` declarations of the mounted
resources and adds what every operation shares (the error body, the bearer
security scheme, the 4xx responses the framework itself can send).

Swagger UI (``GET /docs``, :mod:`oauthproxy.admin.docs`) renders this document
from vendored assets.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

from attrs import define
from klein import Klein

from oauthproxy.admin.endpoint import ApiContext, Call, Endpoint, endpoint, status_text
from oauthproxy.admin.errors import ERROR_SCHEMA
from oauthproxy.admin.schema import Schema

OPENAPI_VERSION = "3.1.0"
_ERROR_REF = {"$ref": "#/components/schemas/Error"}


def openapi_document(endpoints: Iterable[Endpoint], version: str) -> dict[str, Any]:
    """The OpenAPI 3.1 document describing ``endpoints``."""
    paths: dict[str, dict[str, Any]] = {}
    seen: set[str] = set()
    for declared in endpoints:
        if declared.operation_id in seen:
            raise ValueError(f"duplicate operationId {declared.operation_id}")
        seen.add(declared.operation_id)
        item = paths.setdefault(declared.path, {})
        if declared.method.lower() in item:
            raise ValueError(f"{declared.method} {declared.path} is declared twice")
        item[declared.method.lower()] = _operation(declared)
    return {
        # no jsonSchemaDialect: the default (the OAS 3.1 base dialect, JSON Schema 2020-12
        # with OpenAPI's vocabulary) is what the schemas are; naming draft 2020-12 itself
        # makes Swagger UI show an "unsupported dialect" warning box
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "oauthproxy admin API",
            "version": version,
            "description": "Control plane of oauthproxy. Authenticate with "
            "`Authorization: Bearer acm_...`.",
        },
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": {"Error": ERROR_SCHEMA},
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "an API token (acm_...)",
                }
            },
        },
    }


def _operation(declared: Endpoint) -> dict[str, Any]:
    """The OpenAPI operation object of one declaration."""
    operation: dict[str, Any] = {
        "operationId": declared.operation_id,
        "summary": declared.summary,
        "tags": list(declared.tags),
        "responses": _responses(declared),
    }
    if declared.description:
        operation["description"] = declared.description
    parameters = [
        _parameter(name, "path", schema, required=True) for name, schema in declared.params.items()
    ] + [
        _parameter(name, "query", schema, required=False) for name, schema in declared.query.items()
    ]
    if parameters:
        operation["parameters"] = parameters
    if declared.body is not None:
        operation["requestBody"] = {
            "required": declared.body_required,
            "content": {"application/json": {"schema": declared.body}},
        }
    # an empty list means "no security" and overrides nothing global (there is none)
    operation["security"] = [] if declared.auth == "none" else [{"bearer": []}]
    if declared.auth == "admin":
        operation["description"] = (
            operation.get("description", "") + "\n\nRequires the admin token."
        ).strip()
    return operation


def _parameter(name: str, where: str, schema: Schema, *, required: bool) -> dict[str, Any]:
    """An OpenAPI parameter object."""
    parameter: dict[str, Any] = {"name": name, "in": where, "required": required, "schema": schema}
    if "description" in schema:
        parameter["description"] = schema["description"]
    if schema.get("type") == "array":
        parameter["style"] = "form"
        parameter["explode"] = True
    return parameter


def _responses(declared: Endpoint) -> dict[str, Any]:
    """Declared success responses plus the errors the framework can produce for them."""
    responses: dict[str, Any] = {}
    for status, schema in declared.returns.items():
        response: dict[str, Any] = {"description": status_text(status)}
        if schema is not None:
            response["content"] = {"application/json": {"schema": schema}}
        elif declared.stream is not None and status == declared.status:
            response["content"] = {declared.stream: {"schema": {"type": "string"}}}
        responses[str(status)] = response
    errors = {500, 503, *declared.errors}
    if declared.auth != "none":
        # 403 also for ownership and admin-only actions inside bearer endpoints
        errors.update({401, 403})
    if declared.params or declared.query or declared.body is not None:
        errors.add(422)
    if declared.query:
        errors.add(400)
    if declared.body is not None:
        errors.update({400, 413, 415})
    if declared.params:
        errors.add(404)
    for status in sorted(errors):
        responses.setdefault(
            str(status),
            {
                "description": status_text(status),
                "content": {"application/json": {"schema": _ERROR_REF}},
            },
        )
    return responses


@define
class OpenApiResource:
    """``GET /openapi.json``: the document of every resource mounted with this one."""

    app: ClassVar[Klein] = Klein()
    api: ApiContext
    document: dict[str, Any]

    @endpoint(
        app,
        "GET",
        "/openapi.json",
        summary="The OpenAPI 3.1 document of this API",
        tags=("meta",),
        auth="none",
        returns={200: {"type": "object"}},
        operation_id="openapi",
    )
    async def openapi(self, call: Call) -> object:
        """This document."""
        return self.document
