"""Who is calling the admin API, and what they may see and change.

:class:`Authenticator` turns the ``Authorization: Bearer acm_...`` header into a
:class:`Principal` by hashing the value and comparing digests, in constant time,
with the tokens of the in-memory snapshot (no Redis on the request path).  Identity
comes from that header only: no ``X-Auth-User``-style header is ever read.

Endpoint auth rules (``/auth/endpoints``, :class:`~oauthproxy.model.AuthRule`)
replace an endpoint's declared requirement: the highest-priority rule whose
pattern and methods match the request's canonical path (the one the router
matched, without the query) decides, ties going to the lower ``config_id``.
Without a matching rule the declared requirement stands.  Rules are read from
the snapshot too.  ``auth_type: oauth`` accepts an OAuth access token checked by
an injected :class:`~oauthproxy.interfaces.IAccessTokenVerifier` (plus the rule's
scopes and users); the admin token passes every rule, so no rule can lock the
operator out.

The ownership helpers encode the one rule every resource shares: the admin token
sees and changes everything, any other token only the records it owns (``owner``
is the name of the token that created the record).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Literal, TypeVar

from attrs import Factory, define, frozen
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.server import Request
from zope.interface import implementer

from oauthproxy.admin.credentials import TOKEN_PREFIX, hash_token, same_hash
from oauthproxy.admin.errors import InvalidToken
from oauthproxy.errors import Forbidden, NotFound, Unauthorized
from oauthproxy.interfaces import IAccessTokenVerifier, ISnapshotSource, ITokenStore
from oauthproxy.model import ApiToken, AuthRule, AuthType, Claims

#: what an endpoint requires: nobody, any valid API token, or the admin token
AuthRequirement = Literal["none", "bearer", "admin"]

#: longer Authorization values are refused before hashing (room for OAuth JWTs)
_MAX_CREDENTIAL = 4096

_log = Logger()
R = TypeVar("R")


@frozen
class Principal:
    """The authenticated caller: the name of its API token and whether it is the admin token."""

    name: str
    is_admin: bool = False
    authenticated: bool = True
    #: for an OAuth access token (``auth_type: oauth``): its verified claims
    claims: Claims | None = None


#: the caller of a public endpoint
ANONYMOUS = Principal(name="", is_admin=False, authenticated=False)


def may_access(principal: Principal, owner: str) -> bool:
    """Whether ``principal`` may see and change a record owned by ``owner``."""
    if not principal.authenticated:
        return False
    return principal.is_admin or principal.name == owner


def visible(principal: Principal, records: Iterable[R], owner: Callable[[R], str]) -> list[R]:
    """The records ``principal`` may see (``owner(record)`` names each record's owner)."""
    return [record for record in records if may_access(principal, owner(record))]


def require_access(principal: Principal, owner: str, what: str) -> None:
    """Raise ``NotFound`` for ``what`` unless ``principal`` may access it.

    NotFound rather than Forbidden: a token must not learn which records of other
    tokens exist.  Use :func:`require_admin` for operations only the admin may do.
    """
    if not may_access(principal, owner):
        raise NotFound(f"no {what}")


def require_admin(principal: Principal, action: str) -> None:
    """Raise ``Forbidden`` unless ``principal`` is the admin token."""
    if not principal.is_admin:
        raise Forbidden(f"only the admin token may {action}")


def bearer_value(request: Request) -> str | None:
    """The bearer credential of ``request``, None if there is no Authorization header.

    Raises ``InvalidToken`` for a header that is present but not one well-formed
    ``Bearer`` credential.
    """
    values: Sequence[bytes] | None = request.requestHeaders.getRawHeaders(b"authorization")
    if not values:
        return None
    if len(values) != 1 or len(values[0]) > _MAX_CREDENTIAL:
        raise InvalidToken("malformed Authorization header")
    scheme, _, value = values[0].partition(b" ")
    if scheme.lower() != b"bearer" or not value.strip():
        raise InvalidToken("the Authorization header must be 'Bearer <token>'")
    try:
        return value.strip().decode("ascii")
    except UnicodeDecodeError:
        raise InvalidToken("malformed bearer token") from None


class InsufficientScope(Forbidden):
    """The OAuth access token lacks a scope or user the rule requires (RFC 6750 3.1)."""

    code = "insufficient_scope"


@implementer(IAccessTokenVerifier)
class NoAccessTokens:
    """The verifier used until the OAuth server provides one: it accepts no token.

    With it, an ``auth_type: oauth`` rule admits only the admin token.
    """

    def verify(self, token: str) -> Claims | None:
        """Nothing is a valid access token."""
        return None


def canonical_path(path: str) -> str:
    """``path`` as rules are matched against it: no trailing slash (except ``/``).

    The router ignores one trailing slash (``/tokens`` is ``/tokens/``), so rules
    must too, or ``/tokens`` would slip past a rule for ``/tokens/*``.
    """
    return path.rstrip("/") or "/"


def request_path(request: Request) -> str:
    """The canonical path the router matched for ``request`` (decoded segments, no query).

    Raises ``NotFound`` for a path the router refuses too (a ``%2F`` inside a
    segment, ``//``), so a rule never sees a spelling the router did not match.
    """
    segments = [*(request.prepath or []), *(request.postpath or [])]
    try:
        parts = [segment.decode("utf-8") for segment in segments]
    except UnicodeDecodeError:
        raise NotFound("no such endpoint") from None
    if any("/" in part or "\x00" in part for part in parts):
        raise NotFound("no such endpoint")
    path = "/" + "/".join(parts)
    if "//" in path:
        raise NotFound("no such endpoint")
    return canonical_path(path)


def pattern_regex(pattern: str) -> re.Pattern[str]:
    """The regex of a rule's ``path_pattern``: ``*`` is any run of characters.

    A pattern ending in ``/*`` also matches the path without that part
    (``/tokens/*`` covers ``/tokens``), as the router treats both alike.
    """
    pattern = canonical_path(pattern)
    tail = ""
    if pattern.endswith("/*"):
        pattern, tail = pattern[:-2], "(?:/.*)?"
    body = ".*".join(re.escape(piece) for piece in pattern.split("*"))
    return re.compile(body + tail, re.DOTALL)


def rule_method(method: str) -> str:
    """The method rules see: HEAD is GET, since the router serves HEAD with the GET handler."""
    method = method.upper()
    return "GET" if method == "HEAD" else method


def rule_matches(rule: AuthRule, path: str, method: str) -> bool:
    """Whether ``rule`` applies to ``method`` on the canonical ``path``."""
    if "*" not in rule.methods and rule_method(method) not in rule.methods:
        return False
    return pattern_regex(rule.path_pattern).fullmatch(path) is not None


def matching_rule(rules: Iterable[AuthRule], path: str, method: str) -> AuthRule | None:
    """The rule deciding ``method`` on ``path``: highest priority, then lowest config_id."""
    found = [rule for rule in rules if rule_matches(rule, path, method)]
    if not found:
        return None
    return min(found, key=lambda rule: (-rule.priority, rule.config_id))


#: the paths of token management (``/tokens/``, ``/tokens/{name}``, ...)
TOKEN_PATHS = "/tokens"


def touches_token_management(pattern: str) -> bool:
    """Whether a rule with ``pattern`` could match any token management path.

    Exact, not sampled: a pattern's strings all start with its literal prefix
    (up to the first ``*``), and token paths are ``/tokens`` and ``/tokens/...``.
    """
    pattern = canonical_path(pattern)
    if "*" not in pattern:
        return pattern == TOKEN_PATHS or pattern.startswith(TOKEN_PATHS + "/")
    prefix = pattern.split("*", 1)[0]
    return (TOKEN_PATHS + "/").startswith(prefix) or prefix.startswith(TOKEN_PATHS + "/")


@frozen
class Effective:
    """The auth a request gets: the matching rule's, or the endpoint's declared one."""

    auth_type: AuthType
    rule: AuthRule | None = None

    @property
    def scopes(self) -> tuple[str, ...]:
        """OAuth scopes the token must carry (all of them)."""
        return self.rule.oauth_scopes if self.rule is not None else ()

    @property
    def users(self) -> tuple[str, ...]:
        """OAuth users admitted (empty or ``*``: any)."""
        return self.rule.oauth_allowed_users if self.rule is not None else ()


def effective_auth(
    rules: Mapping[str, AuthRule], path: str, method: str, declared: AuthRequirement
) -> Effective:
    """What applies to ``method`` on canonical ``path`` whose endpoint declares ``declared``."""
    rule = matching_rule(rules.values(), path, method)
    return Effective(declared) if rule is None else Effective(rule.auth_type, rule)


@define
class Authenticator:
    """Authenticates admin API requests against the snapshot's API tokens.

    A successful authentication records the token's use through
    ``tokens.touch`` without waiting for it, at most once per ``touch_interval``
    seconds per token (usage is bookkeeping; it must not slow or fail a request).
    """

    snapshots: ISnapshotSource
    tokens: ITokenStore
    clock: IReactorTime
    touch_interval: float = 60.0
    #: checks OAuth access tokens for ``auth_type: oauth`` rules
    verifier: IAccessTokenVerifier = Factory(NoAccessTokens)
    _touched: dict[str, float] = Factory(dict)

    def authenticate(self, request: Request, requirement: AuthRequirement) -> Principal:
        """The principal of ``request`` if it meets the auth that applies to it.

        That is the matching endpoint rule's auth, else ``requirement`` (the
        endpoint's declared one).  Raises ``Unauthorized`` (401) without valid
        credentials and ``Forbidden`` (403) when the admin token is required and
        another token was presented, or an OAuth token lacks a scope or user.
        """
        method = rule_method(request.method.decode("ascii", "replace"))
        effective = effective_auth(
            self.snapshots.current.auth_rules, request_path(request), method, requirement
        )
        return self.authenticate_as(request, effective)

    def authenticate_as(self, request: Request, effective: Effective) -> Principal:
        """The principal of ``request`` under ``effective`` auth (see :meth:`authenticate`)."""
        if effective.auth_type == "none":
            return self._optional(request)
        value = bearer_value(request)
        if value is None:
            raise Unauthorized("this endpoint requires a bearer token")
        token = self._find(value)
        if effective.auth_type == "oauth":
            return self._oauth(value, token, effective)
        if token is None:
            raise InvalidToken("unknown or revoked token")
        principal = Principal(name=token.name, is_admin=token.is_admin)
        if effective.auth_type == "admin":
            require_admin(principal, "do this")
        self._touch(token.name)
        return principal

    def _optional(self, request: Request) -> Principal:
        """On a public endpoint: the caller's token if valid (for ownership), else anonymous.

        Bad credentials do not stop a public endpoint; they just identify nobody.
        """
        try:
            value = bearer_value(request)
        except InvalidToken:
            return ANONYMOUS
        token = None if value is None else self._find(value)
        if token is None:
            return ANONYMOUS
        self._touch(token.name)
        return Principal(name=token.name, is_admin=token.is_admin)

    def _oauth(self, value: str, token: ApiToken | None, effective: Effective) -> Principal:
        """Admit the admin token, or an OAuth access token with the rule's scopes and users."""
        if token is not None and token.is_admin:
            self._touch(token.name)
            return Principal(name=token.name, is_admin=True)
        claims = None if token is not None else self.verifier.verify(value)
        if claims is None:
            raise InvalidToken("this endpoint requires an OAuth access token")
        missing = [scope for scope in effective.scopes if scope not in claims.scopes]
        if missing:
            raise InsufficientScope(f"the access token lacks the scope {missing[0]!r}")
        users = effective.users
        if users and "*" not in users and claims.username not in users:
            raise InsufficientScope(f"user {claims.username!r} may not call this endpoint")
        return Principal(name=f"oauth:{claims.username}", claims=claims)

    def _find(self, value: str) -> ApiToken | None:
        """The snapshot token whose digest matches ``value``'s (every digest is compared)."""
        if not value.startswith(TOKEN_PREFIX):
            return None
        digest = hash_token(value)
        found = None
        for token in self.snapshots.current.tokens.values():
            # no early exit: the time taken does not depend on which token matched
            if same_hash(token.token_hash, digest) and found is None:
                found = token
        return found

    def _touch(self, name: str) -> None:
        """Record a use of ``name`` in the store, fire-and-forget, rate-limited."""
        now = self.clock.seconds()
        last = self._touched.get(name)
        if last is not None and now - last < self.touch_interval:
            return
        self._touched[name] = now
        self.tokens.touch(name, now).addErrback(self._touch_failed, name)

    def _touch_failed(self, failure: Failure, name: str) -> None:
        """Log a failed usage update; the request it belongs to has already succeeded."""
        self._touched.pop(name, None)
        _log.failure("could not record use of API token {name}", failure, name=name)


__all__ = [
    "ANONYMOUS",
    "AuthRequirement",
    "Authenticator",
    "Effective",
    "InsufficientScope",
    "NoAccessTokens",
    "Principal",
    "canonical_path",
    "effective_auth",
    "matching_rule",
    "may_access",
    "request_path",
    "require_access",
    "require_admin",
    "touches_token_management",
    "visible",
]
