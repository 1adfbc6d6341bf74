"""JSON Schema (2020-12) builders and validation for the admin API's declarations.

Endpoints declare their request bodies and parameters with the small builders
here; the same dicts validate requests (:func:`validate`) and appear verbatim in
the OpenAPI 3.1 document, whose schema dialect *is* JSON Schema 2020-12.

The builders make the safe choice the default: objects are closed
(``additionalProperties: false``), strings and arrays carry a maximum size.
:func:`check_request_schema` enforces that for every request schema when the
endpoint is declared, so a forgotten bound fails at import time, not in production.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import best_match

from oauthproxy.admin.messages import describe
from oauthproxy.errors import InvalidInput

#: a JSON Schema document, as a plain dict (what OpenAPI embeds)
Schema = dict[str, Any]

DEFAULT_MAX_LENGTH = 1024
DEFAULT_MAX_ITEMS = 100


def _described(schema: Schema, description: str | None, example: object = None) -> Schema:
    """Add the optional documentation keywords."""
    if description:
        schema["description"] = description
    if example is not None:
        schema["examples"] = [example]
    return schema


def string(
    *,
    max_length: int = DEFAULT_MAX_LENGTH,
    min_length: int = 0,
    pattern: str | None = None,
    format: str | None = None,
    enum: Iterable[str] | None = None,
    description: str | None = None,
    example: str | None = None,
    error: str | None = None,
) -> Schema:
    """A string, at most ``max_length`` characters long.

    ``error`` says in words what ``pattern`` admits, completing "must be ..."
    (``"a DNS name such as app.example.com"``); it is kept as ``x-error`` and
    is what a refusal says instead of quoting the regex.
    """
    schema: Schema = {"type": "string", "maxLength": max_length}
    if min_length:
        schema["minLength"] = min_length
    if pattern is not None:
        schema["pattern"] = pattern
    if error is not None:
        schema["x-error"] = error
    if format is not None:
        schema["format"] = format
    if enum is not None:
        schema["enum"] = list(enum)
    return _described(schema, description, example)


def integer(
    *,
    minimum: int | None = None,
    maximum: int | None = None,
    default: int | None = None,
    description: str | None = None,
) -> Schema:
    """An integer, optionally bounded."""
    schema: Schema = {"type": "integer"}
    if minimum is not None:
        schema["minimum"] = minimum
    if maximum is not None:
        schema["maximum"] = maximum
    if default is not None:
        schema["default"] = default
    return _described(schema, description)


def number(*, minimum: float | None = None, description: str | None = None) -> Schema:
    """A JSON number (times are POSIX seconds)."""
    schema: Schema = {"type": "number"}
    if minimum is not None:
        schema["minimum"] = minimum
    return _described(schema, description)


def boolean(*, default: bool | None = None, description: str | None = None) -> Schema:
    """``true`` or ``false``."""
    schema: Schema = {"type": "boolean"}
    if default is not None:
        schema["default"] = default
    return _described(schema, description)


def array(
    items: Schema,
    *,
    max_items: int = DEFAULT_MAX_ITEMS,
    unique: bool = False,
    description: str | None = None,
) -> Schema:
    """A list of ``items``, at most ``max_items`` long."""
    schema: Schema = {"type": "array", "items": items, "maxItems": max_items}
    if unique:
        schema["uniqueItems"] = True
    return _described(schema, description)


def obj(
    properties: Mapping[str, Schema],
    *,
    required: Iterable[str] = (),
    open: bool = False,
    description: str | None = None,
) -> Schema:
    """An object with ``properties``; closed (unknown fields rejected) unless ``open``."""
    schema: Schema = {"type": "object", "properties": dict(properties)}
    names = list(required)
    unknown = set(names) - set(properties)
    if unknown:
        raise ValueError(f"required names no property: {sorted(unknown)}")
    if names:
        schema["required"] = names
    if not open:
        schema["additionalProperties"] = False
    return _described(schema, description)


def nullable(schema: Schema) -> Schema:
    """``schema`` or ``null``."""
    return {"anyOf": [schema, {"type": "null"}]}


def check_request_schema(schema: Schema, where: str = "") -> None:
    """Refuse a request schema that is invalid, open, or unbounded (at declaration time).

    Every object must say ``additionalProperties`` (false for our own resources;
    an explicit true or a schema for free-form maps), every string a ``maxLength``
    (or an ``enum``), every array a ``maxItems``.
    """
    Draft202012Validator.check_schema(schema)
    _check_bounded(schema, where or "#")


def _check_bounded(schema: Any, where: str) -> None:
    """Walk ``schema`` and raise ValueError at the first unbounded part."""
    if not isinstance(schema, dict):
        return
    kind = schema.get("type")
    kinds = set(kind) if isinstance(kind, list) else {kind}
    if "object" in kinds and "additionalProperties" not in schema:
        raise ValueError(f"{where}: object schema must set additionalProperties")
    if "string" in kinds and "maxLength" not in schema and "enum" not in schema:
        raise ValueError(f"{where}: string schema must set maxLength")
    if "array" in kinds and "maxItems" not in schema:
        raise ValueError(f"{where}: array schema must set maxItems")
    for name, sub in schema.get("properties", {}).items():
        _check_bounded(sub, f"{where}/properties/{name}")
    for key in ("items", "additionalProperties"):
        _check_bounded(schema.get(key), f"{where}/{key}")
    for key in ("anyOf", "oneOf", "allOf"):
        for index, sub in enumerate(schema.get(key, ())):
            _check_bounded(sub, f"{where}/{key}/{index}")


def validator(schema: Schema) -> Draft202012Validator:
    """A reusable validator for ``schema`` that also checks ``format`` (e.g. email)."""
    return Draft202012Validator(schema, format_checker=FormatChecker())


def validate(check: Draft202012Validator, instance: object, prefix: str = "") -> None:
    """Raise ``InvalidInput`` naming the offending field if ``instance`` does not match.

    ``field`` is a JSON pointer into the instance (``/owner_email``), prefixed by
    ``prefix`` (the parameter name for query and path parameters); ``detail`` says
    what is wrong in words (:func:`oauthproxy.admin.messages.describe`).
    """
    error = best_match(check.iter_errors(instance))
    if error is None:
        return
    detail, path = describe(error, prefix)
    pointer = "".join("/" + str(part).replace("~", "~0").replace("/", "~1") for part in path)
    raise InvalidInput(detail, field=prefix + pointer)
