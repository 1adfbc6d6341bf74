"""``/auth/endpoints``: endpoint auth rules (list, create, show, update, delete, test).

A rule (:class:`~oauthproxy.model.AuthRule`) gives the API paths matching its
``path_pattern`` (``*`` globs) and ``methods`` another auth type than their
declared one; :class:`~oauthproxy.admin.access.Authenticator` applies them.
Writing rules needs the admin token unless a rule opens that; even then, a rule
that could match token management (``/tokens``) is created, changed and deleted
by the admin token only, so no other token can open token management or remove
the rule that keeps it admin-only.  Anonymous callers never write rules.

``POST /auth/endpoints/test`` answers which rule (if any) decides a path and
method, and the auth that applies; the endpoints' declared defaults come from
:class:`EndpointCatalogue`, loaded by :class:`~oauthproxy.admin.api.AdminAPI`
with every mounted declaration (``bind_endpoints``).

A rule of type ``oauth`` is refused (409, saying what to set) while this daemon's
authorization server cannot work, as for proxies and routes: no OAuth token could
ever pass it.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar
from urllib.parse import unquote, urlsplit

from attrs import Factory, define, evolve
from klein import Klein
from twisted.internet.interfaces import IReactorTime
from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map, RequestRedirect, Rule

from oauthproxy.admin.access import (
    Principal,
    canonical_path,
    effective_auth,
    require_access,
    require_admin,
    touches_token_management,
    visible,
)
from oauthproxy.admin.endpoint import ApiContext, Call, Endpoint, Reply, endpoint
from oauthproxy.admin.listing import page_query, page_schema, paginate
from oauthproxy.admin.records import record_json
from oauthproxy.admin.schema import Schema, array, integer, nullable, number, obj, string
from oauthproxy.admin.validation import NAME_WORDS
from oauthproxy.errors import Conflict, InvalidInput, NotFound, Unauthorized
from oauthproxy.interfaces import IStorage
from oauthproxy.model import AuthRule
from oauthproxy.oauth.status import OAuthStatus

AUTH_TYPES = ("none", "bearer", "admin", "oauth")
RULE_METHODS = ("*", "GET", "POST", "PUT", "PATCH", "DELETE")

CONFIG_ID = string(
    min_length=1,
    max_length=64,
    pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
    description="letters, digits, '.', '_' and '-'",
    example="public-health",
    error=NAME_WORDS,
)
PATH_PATTERN = string(
    min_length=1,
    max_length=256,
    pattern=r"^/[^?#\s]*$",
    error="a path that starts with / and has no ?, # or spaces, such as /tokens/*",
    description="an API path; '*' matches any run of characters ('/' too); "
    "a trailing '/*' also matches the path without it",
    example="/tokens/*",
)
METHODS = array(
    string(enum=RULE_METHODS),
    max_items=len(RULE_METHODS),
    unique=True,
    description="HTTP methods, or ['*'] for all",
)
#: RFC 6749 scope-token characters
SCOPE = string(
    min_length=1,
    max_length=128,
    pattern=r"^[\x21\x23-\x5b\x5d-\x7e]+$",
    error="a scope such as service:write (no spaces, quotes or backslashes)",
)
#: a GitHub login, or '*' for any user
USER = string(
    min_length=1,
    max_length=39,
    pattern=r"^(\*|[A-Za-z0-9][A-Za-z0-9-]*)$",
    error="a GitHub login such as alice, or *",
)
AUTH_TYPE = string(enum=AUTH_TYPES, description="none, bearer (any API token), admin, oauth")

_EDITABLE: dict[str, Schema] = {
    "path_pattern": PATH_PATTERN,
    "methods": {**METHODS, "minItems": 1},
    "auth_type": AUTH_TYPE,
    "oauth_scopes": array(SCOPE, max_items=32, unique=True),
    "oauth_allowed_users": array(USER, max_items=100, unique=True),
    "priority": integer(minimum=0, maximum=10000, description="higher wins"),
    "description": string(max_length=500),
}
RULE_CREATE = obj({"config_id": CONFIG_ID, **_EDITABLE}, required=("path_pattern", "auth_type"))
RULE_UPDATE = obj(_EDITABLE)
_RULE_FIELDS: dict[str, Schema] = {
    "config_id": CONFIG_ID,
    **_EDITABLE,
    "owner": string(max_length=64),
    "created_at": number(minimum=0),
    "updated_at": number(minimum=0),
}
RULE = obj(_RULE_FIELDS, required=tuple(_RULE_FIELDS))
RULE_TEST = obj(
    {
        "path": string(min_length=1, max_length=2048, example="/tokens/ci"),
        "method": string(enum=RULE_METHODS[1:]),
    },
    required=("path", "method"),
)
RULE_TEST_RESULT = obj(
    {
        "path": string(max_length=2048, description="the canonical path rules match"),
        "method": string(max_length=16),
        "auth_type": nullable(AUTH_TYPE),
        "source": string(enum=("rule", "endpoint", "none")),
        "rule": nullable(RULE),
        "endpoint": nullable(string(max_length=128, description="operationId")),
        "oauth_scopes": array(SCOPE, max_items=32),
        "oauth_allowed_users": array(USER, max_items=100),
    },
    required=(
        "path",
        "method",
        "auth_type",
        "source",
        "rule",
        "endpoint",
        "oauth_scopes",
        "oauth_allowed_users",
    ),
)
_ID = {"config_id": CONFIG_ID}


def rule_json(rule: AuthRule) -> dict[str, Any]:
    """The JSON view of a rule."""
    return record_json(rule)


def _owner(rule: AuthRule) -> str:
    """Rules are owned by the token that created them."""
    return rule.owner


def _methods(methods: Iterable[str]) -> tuple[str, ...]:
    """Methods as stored: ``("*",)`` if ``*`` is among them, else sorted."""
    given = set(methods)
    return ("*",) if "*" in given else tuple(sorted(given))


def _check_pattern(pattern: str) -> None:
    """Refuse a pattern the router could never match (it refuses ``//``)."""
    if "//" in pattern:
        raise InvalidInput("'//' never matches: the router refuses such paths", "/path_pattern")


def _may_write(principal: Principal, *patterns: str) -> None:
    """Raise unless ``principal`` may write rules with these patterns (see module docs)."""
    if not principal.authenticated:
        raise Unauthorized("changing auth rules requires a token")
    if any(touches_token_management(pattern) for pattern in patterns):
        require_admin(principal, "change auth rules that cover token management")


def parse_test_path(path: str) -> str:
    """A client's path as the router would see it; InvalidInput if it never could."""
    raw = urlsplit(path).path
    if not raw.startswith("/"):
        raise InvalidInput("the path must start with '/'", "/path")
    try:
        segments = [unquote(segment, errors="strict") for segment in raw[1:].split("/")]
    except UnicodeDecodeError:
        raise InvalidInput("the path is not UTF-8", "/path") from None
    decoded = "/" + "/".join(segments)
    if any("/" in segment for segment in segments) or "//" in decoded or "\x00" in decoded:
        raise InvalidInput("the router refuses this path ('%2F', '//')", "/path")
    return decoded


@define
class EndpointCatalogue:
    """The mounted endpoints' declared auth, by path and method (for the test endpoint)."""

    _map: Map = Factory(Map)
    _declared: dict[str, Endpoint] = Factory(dict)

    def load(self, endpoints: Iterable[Endpoint]) -> None:
        """Replace the catalogue with ``endpoints``."""
        declared = {item.operation_id: item for item in endpoints}
        rules = [
            Rule(
                item.path.replace("{", "<").replace("}", ">"),
                methods=[item.method],
                endpoint=item.operation_id,
                strict_slashes=False,
                merge_slashes=False,
            )
            for item in declared.values()
        ]
        self._map = Map(rules)
        self._declared = declared

    def find(self, path: str, method: str) -> Endpoint | None:
        """The endpoint routing ``method`` on ``path``, if any."""
        adapter = self._map.bind("localhost")
        try:
            name, _ = adapter.match(path, method=method)
        except (HTTPException, RequestRedirect):
            return None
        return self._declared.get(str(name))


#: the daemon's authorization-server state (None: not known here, nothing is refused)
StatusSource = Callable[[], OAuthStatus] | None


def require_oauth(status: StatusSource, field: str, own_github_app: bool = False) -> None:
    """Refuse OAuth protection the daemon cannot serve, naming what to set (409)."""
    problem = None if status is None else status().problem(own_github_app)
    if problem is not None:
        raise Conflict(problem, field=field)


@define
class AuthRuleResource:
    """The endpoint auth rule endpoints."""

    app: ClassVar[Klein] = Klein()
    api: ApiContext
    storage: IStorage
    clock: IReactorTime
    #: rules of type ``oauth`` are refused while the authorization server cannot work
    oauth_status: StatusSource = None
    catalogue: EndpointCatalogue = Factory(EndpointCatalogue)

    def bind_endpoints(self, endpoints: Iterable[Endpoint]) -> None:
        """Learn the declarations of every mounted endpoint (called by AdminAPI)."""
        self.catalogue.load(endpoints)

    async def _visible_rule(self, call: Call) -> AuthRule:
        """The rule named in the path, if the caller may access it (else 404)."""
        config_id = call.params["config_id"]
        rule: AuthRule | None = await self.storage.auth_rules.get(config_id)
        if rule is None:
            raise NotFound(f"no auth rule {config_id!r}", field="config_id")
        require_access(call.principal, rule.owner, f"auth rule {config_id!r}")
        return rule

    @endpoint(
        app,
        "GET",
        "/auth/endpoints",
        summary="List endpoint auth rules",
        tags=("auth",),
        query=page_query({"auth_type": AUTH_TYPE}),
        returns={200: page_schema(RULE)},
        operation_id="auth_rules_list",
    )
    async def list(self, call: Call) -> object:
        """Rules visible to the caller, highest priority first, filtered by ``auth_type``."""
        rules = visible(call.principal, await self.storage.auth_rules.list(), _owner)
        rules.sort(key=lambda rule: (-rule.priority, rule.config_id))
        return paginate(rules, call.query, rule_json, filters=("auth_type",))

    @endpoint(
        app,
        "POST",
        "/auth/endpoints",
        summary="Create an endpoint auth rule",
        tags=("auth",),
        auth="admin",
        body=RULE_CREATE,
        returns={201: RULE},
        errors=(409,),
        operation_id="auth_rules_create",
    )
    async def create(self, call: Call) -> object:
        """Store a rule; it applies once the snapshot has it."""
        body = call.body
        _check_pattern(body["path_pattern"])
        _may_write(call.principal, body["path_pattern"])
        if body["auth_type"] == "oauth":
            require_oauth(self.oauth_status, "/auth_type")
        config_id = body.get("config_id") or f"rule-{secrets.token_hex(6)}"
        if await self.storage.auth_rules.get(config_id) is not None:
            raise Conflict(f"an auth rule {config_id!r} exists", field="/config_id")
        now = self.clock.seconds()
        rule = AuthRule(
            config_id=config_id,
            path_pattern=body["path_pattern"],
            methods=_methods(body.get("methods", ("*",))),
            auth_type=body["auth_type"],
            oauth_scopes=tuple(body.get("oauth_scopes", ())),
            oauth_allowed_users=tuple(body.get("oauth_allowed_users", ())),
            priority=body.get("priority", 50),
            description=body.get("description", ""),
            owner=call.principal.name,
            created_at=now,
            updated_at=now,
        )
        await self.storage.auth_rules.create(rule)
        return Reply(201, rule_json(rule), {"location": f"/auth/endpoints/{config_id}"})

    @endpoint(
        app,
        "POST",
        "/auth/endpoints/test",
        summary="Which rule decides a path and method, and the auth that applies",
        tags=("auth",),
        body=RULE_TEST,
        returns={200: RULE_TEST_RESULT},
        operation_id="auth_rules_test",
    )
    async def test(self, call: Call) -> object:
        """Match ``path`` (query ignored) and ``method`` as a request would be."""
        decoded = parse_test_path(call.body["path"])
        method = call.body["method"]
        path = canonical_path(decoded)
        declared = self.catalogue.find(decoded, method)
        rules: Mapping[str, AuthRule] = {
            rule.config_id: rule for rule in await self.storage.auth_rules.list()
        }
        effective = effective_auth(rules, path, method, declared.auth if declared else "bearer")
        if effective.rule is not None:
            source = "rule"
        elif declared is not None:
            source = "endpoint"
        else:
            source = "none"
        return {
            "path": path,
            "method": method,
            "auth_type": None if source == "none" else effective.auth_type,
            "source": source,
            "rule": None if effective.rule is None else rule_json(effective.rule),
            "endpoint": None if declared is None else declared.operation_id,
            "oauth_scopes": list(effective.scopes),
            "oauth_allowed_users": list(effective.users),
        }

    @endpoint(
        app,
        "GET",
        "/auth/endpoints/{config_id}",
        summary="Show an endpoint auth rule",
        tags=("auth",),
        params=_ID,
        returns={200: RULE},
        operation_id="auth_rules_show",
    )
    async def show(self, call: Call) -> object:
        """The rule."""
        return rule_json(await self._visible_rule(call))

    @endpoint(
        app,
        "PUT",
        "/auth/endpoints/{config_id}",
        summary="Change an endpoint auth rule (only the fields given)",
        tags=("auth",),
        auth="admin",
        params=_ID,
        body=RULE_UPDATE,
        returns={200: RULE},
        errors=(409,),
        operation_id="auth_rules_update",
    )
    async def update(self, call: Call) -> object:
        """Replace the given fields; covering token management needs the admin token."""
        rule = await self._visible_rule(call)
        changes = dict(call.body)
        pattern = changes.get("path_pattern", rule.path_pattern)
        _check_pattern(pattern)
        _may_write(call.principal, rule.path_pattern, pattern)
        if changes.get("auth_type") == "oauth" and rule.auth_type != "oauth":
            require_oauth(self.oauth_status, "/auth_type")
        updated = evolve(
            rule,
            path_pattern=pattern,
            methods=_methods(changes.get("methods", rule.methods)),
            auth_type=changes.get("auth_type", rule.auth_type),
            oauth_scopes=tuple(changes.get("oauth_scopes", rule.oauth_scopes)),
            oauth_allowed_users=tuple(changes.get("oauth_allowed_users", rule.oauth_allowed_users)),
            priority=changes.get("priority", rule.priority),
            description=changes.get("description", rule.description),
            updated_at=self.clock.seconds(),
        )
        await self.storage.auth_rules.update(updated)
        return rule_json(updated)

    @endpoint(
        app,
        "DELETE",
        "/auth/endpoints/{config_id}",
        summary="Delete an endpoint auth rule",
        tags=("auth",),
        auth="admin",
        params=_ID,
        returns={204: None},
        operation_id="auth_rules_delete",
    )
    async def delete(self, call: Call) -> object:
        """Remove the rule; one covering token management only with the admin token."""
        rule = await self._visible_rule(call)
        _may_write(call.principal, rule.path_pattern)
        await self.storage.auth_rules.delete(rule.config_id)
        return Reply(204)
