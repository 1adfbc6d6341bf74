"""Declarative admin API endpoints: declare once, validated and documented from that.

A resource is a class with ``app = Klein()`` as a class attribute, an ``api:
ApiContext`` attribute and its dependencies from ``__init__``; each operation is a
method decorated with :func:`endpoint`::

    @define
    class ThingResource:
        app: ClassVar[Klein] = Klein()
        api: ApiContext
        storage: IStorage

        @endpoint(app, "GET", "/things/{name}", summary="Show a thing", tags=("things",),
                  params={"name": THING_NAME}, returns={200: THING})
        async def show(self, call: Call) -> object:
            return thing_json(await self.storage.things.get(call.params["name"]))

The decorator routes the method in Klein and wraps it so that, in this order, the
caller is authenticated (``auth``: ``"bearer"`` by default), path and query
parameters are parsed and validated, the body is checked (``application/json``,
size limit, closed and bounded schema) and every failure becomes the JSON error of
:mod:`oauthproxy.admin.errors`.  The handler receives a :class:`Call` with the
validated data and the :class:`~oauthproxy.admin.access.Principal`, and returns a
JSON value (sent with the first declared status) or a :class:`Reply` (whose body
may be a :class:`RawBody` for the rare endpoint that does not answer JSON) — or, for
an endpoint declared with ``stream`` (a media type), a :class:`Stream` that writes the
body piece by piece once the status and headers are out (log follows).
:mod:`oauthproxy.admin.openapi` reads the same :class:`Endpoint` declarations.

Building blocks for handlers: :mod:`~oauthproxy.admin.schema` (builders),
:mod:`~oauthproxy.admin.listing` (``page_query``/``page_schema``/``paginate``),
:mod:`~oauthproxy.admin.access` (``visible``/``require_access``/``require_admin``),
:mod:`~oauthproxy.admin.records` (``record_json``, ``merged`` for PUT/PATCH);
:mod:`~oauthproxy.admin.tokens` is a complete example.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from http import HTTPStatus
from typing import Any, Protocol, TypeVar

from attrs import define, field, frozen
from jsonschema import Draft202012Validator
from klein import Klein
from twisted.internet.defer import CancelledError
from twisted.logger import Logger
from twisted.web.server import Request

from oauthproxy.admin.access import AuthRequirement, Principal
from oauthproxy.admin.errors import InternalError, json_bytes, render_error
from oauthproxy.admin.inputs import DEFAULT_MAX_BODY, read_body, read_query
from oauthproxy.admin.schema import Schema, check_request_schema, validate, validator
from oauthproxy.errors import InvalidInput

#: the attribute of a decorated method holding its declaration
ENDPOINT_ATTRIBUTE = "__oauthproxy_endpoint__"
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_SCALARS = frozenset({"string", "integer", "number", "boolean"})
_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE"})
#: longest path parameter: Twisted drops request lines over 16 KiB, whatever we declare
MAX_PATH_PARAMETER = 255
_log = Logger()


class RequestAuthenticator(Protocol):
    """Decides who the caller is; :class:`~oauthproxy.admin.access.Authenticator` by default.

    The place for per-endpoint auth rules (``/auth/endpoints``): a rules-aware
    implementation may replace the declared requirement by the matching rule's.
    """

    def authenticate(self, request: Request, requirement: AuthRequirement) -> Principal:
        """The caller's principal; raise Unauthorized/Forbidden if it may not proceed."""


@define
class ApiContext:
    """What every endpoint wrapper needs, shared by all resources of one admin API."""

    authenticator: RequestAuthenticator
    max_body: int = DEFAULT_MAX_BODY
    #: validate every response against its declared schema (tests turn this on)
    check_responses: bool = False


class ApiResource(Protocol):
    """A resource class: its endpoint wrappers find the shared context here."""

    api: ApiContext


@frozen
class Call:
    """One validated request, as a handler receives it."""

    principal: Principal
    #: the parsed JSON body (None when the endpoint declares none or it was omitted)
    body: Any
    #: declared query parameters, converted and validated, defaults filled in
    query: Mapping[str, Any]
    #: path parameters, validated
    params: Mapping[str, str]
    request: Request


@frozen
class Reply:
    """A handler result with an explicit status (one of the declared ones) or headers."""

    status: int
    body: object = None
    headers: Mapping[str, str] = field(factory=dict)


@frozen
class Stream:
    """A handler result written piece by piece: ``run(request)`` writes, returns at the end.

    Only for endpoints declared with ``stream``; status 200 and the declared media
    type are sent first.  A failure once the body has begun can only end the body.
    """

    run: Callable[[Request], Awaitable[None]]


@frozen
class RawBody:
    """A reply body sent whole and as is (not JSON), with its own content type.

    For the rare endpoint whose media type is negotiated per request, e.g. the
    Prometheus exposition of ``/metrics`` (text or OpenMetrics).
    """

    content: bytes
    content_type: str


@frozen
class Endpoint:
    """The declaration of one operation: everything validation and OpenAPI need."""

    method: str
    #: OpenAPI path template, ``{name}`` for path parameters
    path: str
    summary: str
    operation_id: str
    tags: tuple[str, ...]
    auth: AuthRequirement
    body: Schema | None
    body_required: bool
    query: Mapping[str, Schema]
    params: Mapping[str, Schema]
    #: status → response body schema (None: no body); the first is the default
    returns: Mapping[int, Schema | None]
    #: error statuses the handler itself raises (e.g. 409), for the document
    errors: tuple[int, ...] = ()
    description: str = ""
    #: the media type of a streamed 200 body (the handler returns a :class:`Stream`)
    stream: str | None = None

    @property
    def status(self) -> int:
        """The status sent when the handler returns a plain value."""
        return next(iter(self.returns))


R = TypeVar("R", bound=ApiResource)
Handler = Callable[[R, Call], Coroutine[Any, Any, object]]


def endpoint(
    app: Klein,
    method: str,
    path: str,
    *,
    summary: str,
    returns: Mapping[int, Schema | None],
    tags: tuple[str, ...] = (),
    auth: AuthRequirement = "bearer",
    body: Schema | None = None,
    body_required: bool = True,
    query: Mapping[str, Schema] | None = None,
    params: Mapping[str, Schema] | None = None,
    errors: tuple[int, ...] = (),
    description: str = "",
    operation_id: str | None = None,
    stream: str | None = None,
) -> Callable[[Handler[R]], Handler[R]]:
    """Declare, route and wrap one operation of a resource class (see the module docstring).

    ``errors`` lists the error statuses the handler raises beyond those the
    framework documents by itself (401/403 with auth, 404 with path parameters,
    400/413/415/422 with inputs, 500/503 always), e.g. ``(409,)`` for a create.
    Declaration mistakes (unbounded or open request schemas, undeclared path
    parameters or ones without ``maxLength`` <= 255, unknown methods) raise
    ValueError when the class is defined.
    """
    method = method.upper()
    if method not in _METHODS:
        raise ValueError(f"{path}: unsupported method {method}")
    params = dict(params or {})
    query = dict(query or {})
    placeholders = _PLACEHOLDER.findall(path)
    if sorted(placeholders) != sorted(params):
        raise ValueError(f"{path}: path parameters {placeholders} declared as {sorted(params)}")
    if not returns or not all(100 <= status < 600 for status in returns):
        raise ValueError(f"{path}: returns must map HTTP statuses to schemas")
    if body is not None:
        check_request_schema(body, f"{method} {path} body")
    for name, schema in {**params, **query}.items():
        _check_parameter(schema, f"{method} {path} parameter {name}")
    if any(schema.get("type") != "string" for schema in params.values()):
        raise ValueError(f"{path}: path parameters are strings")
    for name, schema in params.items():
        _check_path_parameter(schema, f"{method} {path} parameter {name}")

    def decorate(handler: Handler[R]) -> Handler[R]:
        declaration = Endpoint(
            method=method,
            path=path,
            summary=summary,
            operation_id=operation_id or "_".join((*tags[:1], handler.__name__)),
            tags=tags,
            auth=auth,
            body=body,
            body_required=body_required,
            query=query,
            params=params,
            returns=dict(returns),
            errors=errors,
            description=description or inspect.getdoc(handler) or "",
            stream=stream,
        )
        wrapper = _wrap(declaration, handler)
        app.route(
            _PLACEHOLDER.sub(r"<\1>", path),
            methods=[method],
            endpoint=declaration.operation_id,
            strict_slashes=False,
            merge_slashes=False,
        )(wrapper)
        setattr(handler, ENDPOINT_ATTRIBUTE, declaration)
        return handler

    return decorate


def endpoints_of(resource: object) -> list[Endpoint]:
    """The declarations of ``resource`` (a resource class or instance), by path and method."""
    kind = resource if isinstance(resource, type) else type(resource)
    found = [
        getattr(member, ENDPOINT_ATTRIBUTE)
        for _, member in inspect.getmembers(kind)
        if hasattr(member, ENDPOINT_ATTRIBUTE)
    ]
    return sorted(found, key=lambda declared: (declared.path, declared.method))


def _check_parameter(schema: Schema, where: str) -> None:
    """Parameters are scalars or arrays of scalars (all a query string can carry)."""
    check_request_schema(schema, where)
    kind = schema.get("type")
    if kind == "array":
        kind = schema.get("items", {}).get("type")
    if kind not in _SCALARS:
        raise ValueError(f"{where}: parameters must be scalars or arrays of scalars")


def _check_path_parameter(schema: Schema, where: str) -> None:
    """Path parameters are short: a long one would push the request line past Twisted's limit."""
    longest = schema.get("maxLength")
    if not isinstance(longest, int) or longest > MAX_PATH_PARAMETER:
        raise ValueError(f"{where}: path parameters need maxLength <= {MAX_PATH_PARAMETER}")


def _wrap(declared: Endpoint, handler: Handler[R]) -> Callable[..., Coroutine[Any, Any, bytes]]:
    """The Klein route function: authenticate, validate, call ``handler``, render."""
    body_check = validator(declared.body) if declared.body is not None else None
    parameter_checks = {
        name: validator(schema) for name, schema in {**declared.params, **declared.query}.items()
    }
    response_checks = {
        status: validator(schema) for status, schema in declared.returns.items() if schema
    }

    async def route(self: R, request: Request, **path: str) -> bytes:
        try:
            principal = self.api.authenticator.authenticate(request, declared.auth)
            for name, value in path.items():
                validate(parameter_checks[name], value, prefix=name)
            call = Call(
                principal=principal,
                body=read_body(
                    request, body_check, required=declared.body_required, limit=self.api.max_body
                ),
                query=read_query(request, declared.query, parameter_checks),
                params=path,
                request=request,
            )
            result = await handler(self, call)
            if isinstance(result, Stream) and declared.stream is not None:
                return await _stream(request, declared.stream, result)
            reply = result if isinstance(result, Reply) else Reply(declared.status, result)
            if isinstance(reply.body, RawBody):
                payload = reply.body.content
                request.responseHeaders.setRawHeaders(
                    b"content-type", [reply.body.content_type.encode("ascii")]
                )
            else:
                if self.api.check_responses:
                    _check_reply(declared, response_checks, reply)
                payload = (
                    b""
                    if declared.returns.get(reply.status) is None
                    else json_bytes(request, reply.body)
                )
        except CancelledError:
            raise
        except Exception as error:
            return render_error(request, error)
        request.setResponseCode(reply.status)
        for name, value in reply.headers.items():
            request.responseHeaders.setRawHeaders(name.encode("ascii"), [value.encode("utf-8")])
        return payload

    route.__name__ = handler.__name__
    route.__qualname__ = handler.__qualname__
    return route


async def _stream(request: Request, media_type: str, stream: Stream) -> bytes:
    """Send 200 and the headers, then let ``stream`` write the body."""
    request.setResponseCode(200)
    request.responseHeaders.setRawHeaders(b"content-type", [media_type.encode("ascii")])
    request.responseHeaders.setRawHeaders(b"cache-control", [b"no-store"])
    request.responseHeaders.setRawHeaders(b"x-content-type-options", [b"nosniff"])
    # the head goes out now: a client learns the stream is open before the first piece
    request.write(b"")  # type: ignore[no-untyped-call]
    try:
        await stream.run(request)
    except CancelledError:
        raise
    except Exception:
        # the status is out: all that is left is ending the body early
        _log.failure("admin API: stream on {path} failed", path=request.path.decode("latin-1"))
    return b""


def _check_reply(
    declared: Endpoint, checks: Mapping[int, Draft202012Validator], reply: Reply
) -> None:
    """Raise if ``reply`` does not match the declaration (a bug in the handler)."""
    if reply.status not in declared.returns:
        raise InternalError(f"{declared.operation_id}: undeclared status {reply.status}")
    check = checks.get(reply.status)
    if check is not None:
        try:
            validate(check, reply.body)
        except InvalidInput as error:
            raise InternalError(
                f"{declared.operation_id}: response {error.field}: {error.detail}"
            ) from None


def status_text(status: int) -> str:
    """The reason phrase of ``status`` (OpenAPI response descriptions)."""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return str(status)
