"""Tests for ``GET /openapi.json``: generated from the declarations, valid OpenAPI 3.1."""

from __future__ import annotations

from typing import Any

from jsonschema import Draft202012Validator
from openapi_spec_validator import validate
from twisted.trial.unittest import SynchronousTestCase

from oauthproxy.admin.endpoint import endpoints_of
from oauthproxy.admin.health import HealthResource
from oauthproxy.admin.openapi import OpenApiResource
from tests.admin.harness import Harness

METHODS = ("get", "put", "post", "delete", "patch")


class OpenApiTests(SynchronousTestCase):
    """The document as a client or schemathesis reads it."""

    def setUp(self) -> None:
        self.h = Harness(self)
        answer = self.h.call("GET", "/openapi.json")
        self.assertEqual(answer.status, 200)
        self.document: dict[str, Any] = answer.json()

    def operations(self) -> list[tuple[str, str, dict[str, Any]]]:
        """Every (path, method, operation) of the document."""
        return [
            (path, method, item[method])
            for path, item in self.document["paths"].items()
            for method in METHODS
            if method in item
        ]

    def test_document_is_valid_openapi_31(self) -> None:
        """openapi-spec-validator accepts the document as OpenAPI 3.1."""
        self.assertEqual(self.document["openapi"], "3.1.0")
        validate(self.document)

    def test_every_declared_operation_is_documented(self) -> None:
        """Every operation a mounted resource declares is in the document, and no other."""
        found = {(path, method) for path, method, _ in self.operations()}
        declared = {
            (endpoint.path, endpoint.method.lower())
            for resource in [*self.h.api.resources(), OpenApiResource]
            for endpoint in endpoints_of(resource)
        }
        self.assertEqual(found, declared)
        self.assertLessEqual(
            {("/health", "get"), ("/openapi.json", "get"), ("/tokens/", "post")}, found
        )

    def test_operation_ids_are_unique(self) -> None:
        """Each operation has its own operationId (clients generate names from them)."""
        ids = [operation["operationId"] for _, _, operation in self.operations()]
        self.assertEqual(len(ids), len(set(ids)))

    def test_public_and_protected_operations_say_so(self) -> None:
        """Public operations have empty security; the others require the bearer scheme."""
        security = {(p, m): op["security"] for p, m, op in self.operations()}
        self.assertEqual(security[("/health", "get")], [])
        self.assertEqual(security[("/tokens/", "post")], [{"bearer": []}])
        self.assertIn("bearer", self.document["components"]["securitySchemes"])

    def test_request_body_is_the_validating_schema(self) -> None:
        """The documented body of ``POST /tokens/`` is closed and names its required fields."""
        body = self.document["paths"]["/tokens/"]["post"]["requestBody"]
        schema = body["content"]["application/json"]["schema"]
        self.assertIs(schema["additionalProperties"], False)
        self.assertEqual(schema["required"], ["name", "owner_email"])

    def test_path_parameters_are_required(self) -> None:
        """``{name}`` is documented as a required path parameter with its pattern."""
        (parameter,) = self.document["paths"]["/tokens/{name}"]["get"]["parameters"]
        self.assertEqual((parameter["in"], parameter["required"]), ("path", True))
        self.assertIn("pattern", parameter["schema"])

    def test_error_responses_use_the_error_schema(self) -> None:
        """Framework errors (401, 422, ...) are documented with the shared Error schema."""
        responses = self.document["paths"]["/tokens/"]["post"]["responses"]
        for status in ("401", "403", "413", "415", "422"):
            schema = responses[status]["content"]["application/json"]["schema"]
            self.assertEqual(schema, {"$ref": "#/components/schemas/Error"})

    def test_every_schema_is_valid_json_schema(self) -> None:
        """Every body and response schema is a valid JSON Schema 2020-12 document."""
        for _, _, operation in self.operations():
            for response in operation["responses"].values():
                for media in response.get("content", {}).values():
                    Draft202012Validator.check_schema(media["schema"])
            if "requestBody" in operation:
                schema = operation["requestBody"]["content"]["application/json"]["schema"]
                Draft202012Validator.check_schema(schema)


class DocumentBuildTests(SynchronousTestCase):
    """Building the document refuses ambiguous declarations."""

    def test_same_operation_twice_is_refused(self) -> None:
        """Two resources declaring the same method and path fail when mounted."""
        h = Harness(self)
        twin = HealthResource(h.api.context, h.api.snapshots, h.api.health)
        self.assertRaises(ValueError, h.api.resource, twin)
