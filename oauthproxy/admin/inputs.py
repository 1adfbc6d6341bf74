"""Reading request inputs: the JSON body and the query string, converted and validated.

Used by the endpoint wrapper (:mod:`oauthproxy.admin.endpoint`); pure functions of
the request and the declared schemas, so every resource parses input the same way.
twisted.web has already buffered the body when a resource renders, and by itself
without any limit: :func:`bounded_request` is the Site's request factory that
stops keeping a body past the limit (the endpoint then answers 413).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from jsonschema import Draft202012Validator
from twisted.web.server import Request

from oauthproxy.admin.errors import MalformedRequest, PayloadTooLarge, UnsupportedMediaType
from oauthproxy.admin.schema import Schema, validate
from oauthproxy.errors import InvalidInput

DEFAULT_MAX_BODY = 1024 * 1024
_MAX_QUERY_FIELDS = 64
#: media types a JSON body may arrive with besides ``application/json``: none at all, and
#: what ``curl -d`` and HTML forms send by default, so the seed's curl examples work as written
_LENIENT_MEDIA_TYPES = (b"", b"application/x-www-form-urlencoded", b"text/plain")
_INTEGER = re.compile(r"-?[0-9]{1,18}")


class OverflowedBody:
    """Stands in for ``request.content`` once a body went over the limit: keeps nothing."""

    def write(self, data: bytes) -> None:
        """Discard ``data``."""

    def read(self, size: int = -1) -> bytes:
        """Nothing was kept (twisted reads form bodies itself; they come out empty)."""
        return b""

    def seek(self, offset: int, whence: int = 0) -> int:
        """Nothing to seek in."""
        return 0

    def tell(self) -> int:
        """Nothing was kept (so twisted parses no form arguments from it)."""
        return 0

    def close(self) -> None:
        """Nothing to close."""


class BoundedRequest(Request):
    """A Request that stops storing its body past ``max_body`` bytes.

    The body is still read to its end (HTTP wants the request consumed before the
    answer), but not kept, so a client cannot fill memory or disk.
    """

    max_body = DEFAULT_MAX_BODY
    _stored = 0

    def gotLength(self, length: int | None) -> None:
        """Refuse to keep a body whose declared length is over the limit."""
        if length is not None and length > self.max_body:
            self.content = OverflowedBody()
        else:
            super().gotLength(length)  # type: ignore[no-untyped-call]

    def handleContentChunk(self, data: bytes) -> None:
        """Keep ``data`` until the limit; past it, drop what was kept."""
        if isinstance(self.content, OverflowedBody):
            return
        self._stored += len(data)
        if self._stored > self.max_body:
            if self.content is not None:
                self.content.close()
            self.content = OverflowedBody()
            return
        super().handleContentChunk(data)  # type: ignore[no-untyped-call]


def bounded_request(max_body: int = DEFAULT_MAX_BODY) -> type[Request]:
    """A ``Site(requestFactory=...)`` keeping at most ``max_body`` bytes of each body."""
    return type("BoundedRequest", (BoundedRequest,), {"max_body": max_body})


def read_body(
    request: Request, check: Draft202012Validator | None, *, required: bool, limit: int
) -> Any:
    """The request's JSON body, validated by ``check``; None when there is no body to read.

    Raises 413 over ``limit`` bytes, 400 for bytes that are not JSON (``NaN``
    included) and 422 for a schema violation.  The body is JSON whatever the
    ``Content-Type`` says as long as it parses: ``application/json`` (or
    ``+json``), none, or ``curl -d``'s form type (:data:`_LENIENT_MEDIA_TYPES`).
    Under any other media type (multipart, XML ...) or under a lenient one
    whose bytes are not JSON, the answer is 415 saying to send JSON.
    """
    if check is None:
        return None
    declared_length = _header(request, b"content-length")
    if declared_length is not None and declared_length.isdigit() and int(declared_length) > limit:
        raise PayloadTooLarge(f"the body must not exceed {limit} bytes")
    content = request.content
    if isinstance(content, OverflowedBody):
        raise PayloadTooLarge(f"the body must not exceed {limit} bytes")
    data = content.read(limit + 1) if content is not None else b""
    if len(data) > limit:
        raise PayloadTooLarge(f"the body must not exceed {limit} bytes")
    if not data and not required:
        return None
    media_type = (_header(request, b"content-type") or b"").split(b";")[0].strip().lower()
    declared_json = media_type == b"application/json" or media_type.endswith(b"+json")
    if not declared_json and media_type not in _LENIENT_MEDIA_TYPES:
        raise UnsupportedMediaType("send the body as JSON (Content-Type: application/json)")
    if not data:
        raise MalformedRequest("a JSON body is required")
    try:
        body = json.loads(data, parse_constant=_refuse_constant)
    except (ValueError, RecursionError):
        if not declared_json and media_type:
            raise UnsupportedMediaType(
                "the body is not JSON; send it as JSON (Content-Type: application/json)"
            ) from None
        raise MalformedRequest("the body is not valid JSON") from None
    validate(check, body)
    return body


def _header(request: Request, name: bytes) -> bytes | None:
    """The first value of request header ``name``."""
    values: Sequence[bytes] | None = request.requestHeaders.getRawHeaders(name)
    return values[0] if values else None


def _refuse_constant(name: str) -> float:
    """``NaN`` and ``Infinity`` are not JSON."""
    raise ValueError(f"{name} is not JSON")


def read_query(
    request: Request, declared: Mapping[str, Schema], checks: Mapping[str, Draft202012Validator]
) -> dict[str, Any]:
    """The ``declared`` query parameters, converted by their schema types and validated.

    Unknown parameters are refused (a token in the query must not look accepted),
    scalars may appear once, arrays repeat the parameter (``?tag=a&tag=b``).
    """
    raw = urlsplit(request.uri).query
    try:
        pairs = parse_qsl(
            raw.decode("ascii"),
            keep_blank_values=True,
            strict_parsing=False,
            errors="strict",
            max_num_fields=_MAX_QUERY_FIELDS,
        )
    except ValueError:
        raise MalformedRequest("the query string is malformed or too long") from None
    given: dict[str, list[str]] = {}
    for name, value in pairs:
        if name not in declared:
            raise InvalidInput("unknown query parameter", field=name)
        given.setdefault(name, []).append(value)
    query: dict[str, Any] = {}
    for name, schema in declared.items():
        values = given.get(name)
        if values is None:
            if "default" in schema:
                query[name] = schema["default"]
            continue
        converted: Any
        if schema.get("type") == "array":
            converted = [_convert(schema["items"], item, name) for item in values]
        elif len(values) > 1:
            raise InvalidInput("give this parameter once", field=name)
        else:
            converted = _convert(schema, values[0], name)
        validate(checks[name], converted, prefix=name)
        query[name] = converted
    return query


def _convert(schema: Schema, text: str, name: str) -> object:
    """Convert a query string value to the JSON type its schema declares."""
    kind = schema.get("type")
    if kind == "integer":
        if not _INTEGER.fullmatch(text):
            raise InvalidInput("must be an integer", field=name)
        return int(text)
    if kind == "number":
        try:
            number = float(text)
        except ValueError:
            number = math.nan
        if not math.isfinite(number):
            raise InvalidInput("must be a number", field=name)
        return number
    if kind == "boolean":
        if text not in ("true", "false", "1", "0"):
            raise InvalidInput("must be true or false", field=name)
        return text in ("true", "1")
    return text
