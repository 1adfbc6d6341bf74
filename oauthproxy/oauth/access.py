"""Who may get which token: allowlists, scopes and RFC 8707 resources.

A token's audience is the set of resources the client asked for *and* the user may
use (BCP-3, MCP-11): a user missing from a proxy's allowlist cannot obtain a token
whose audience includes that proxy.  Scopes are checked against what the server
supports and what the client registered; unknown ones are ``invalid_scope``, unknown
or forbidden resources ``invalid_target`` (RFC 8707 §2).

Allowlist entries: ``*`` (everyone), a GitHub login (case-insensitive),
``org:<org>`` (a member of the organisation) or ``team:<org>/<team-slug>``.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping, Sequence

from oauthproxy.oauth.errors import InvalidScope, InvalidTarget
from oauthproxy.oauth.metadata import canonical_resource
from oauthproxy.oauth.records import UserIdentity

# RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
_SCOPE_TOKEN = re.compile(r"^[\x21\x23-\x5b\x5d-\x7e]+$")
MAX_RESOURCES = 10


def user_allowed(user: UserIdentity, allowlist: Iterable[str]) -> bool:
    """Whether ``user`` matches an entry of ``allowlist`` (an empty list allows nobody)."""
    login = user.username.casefold()
    for entry in allowlist:
        entry = entry.strip()
        if entry == "*":
            return True
        if entry.startswith("org:"):
            if entry[4:].casefold() in user.orgs:
                return True
        elif entry.startswith("team:"):
            if entry[5:].casefold() in user.teams:
                return True
        elif entry.casefold() == login:
            return True
    return False


def allowed_resources(
    user: UserIdentity,
    resources: Mapping[str, Sequence[str]],
    global_allowlist: Sequence[str],
) -> frozenset[str]:
    """The canonical resources ``user`` may obtain tokens for.

    ``resources`` maps each protected resource to its own allowlist (empty = only the
    global list applies); the global ``OAUTH_ALLOWED_GITHUB_USERS`` list applies to all.
    """
    if not user_allowed(user, global_allowlist):
        return frozenset()
    return frozenset(
        canonical_resource(resource)
        for resource, allowlist in resources.items()
        if not allowlist or user_allowed(user, allowlist)
    )


def parse_scope(value: str | None) -> tuple[str, ...]:
    """The scope tokens of a ``scope`` parameter, de-duplicated in order."""
    if not value:
        return ()
    tokens = value.split(" ")
    if any(_SCOPE_TOKEN.fullmatch(token) is None for token in tokens):
        raise InvalidScope("scope is malformed", "scope")
    return tuple(dict.fromkeys(tokens))


def resolve_scopes(
    requested: tuple[str, ...],
    *,
    supported: Collection[str],
    client_scope: str | None = None,
    default: tuple[str, ...] = (),
) -> tuple[str, ...]:
    """The scopes to grant: the request (or ``default``), all supported and registered."""
    scopes = requested or default
    unknown = [scope for scope in scopes if scope not in supported]
    if unknown:
        raise InvalidScope(f"unknown scope {unknown[0][:40]}", "scope")
    if client_scope is not None:
        registered = set(client_scope.split())
        extra = [scope for scope in scopes if scope not in registered]
        if extra:
            raise InvalidScope(f"scope {extra[0][:40]} was not registered by the client", "scope")
    return scopes


def narrower_scopes(requested: tuple[str, ...], granted: tuple[str, ...]) -> tuple[str, ...]:
    """``requested`` if it is within ``granted`` (refresh, RFC 6749 §6), else InvalidScope."""
    if not requested:
        return granted
    wider = [scope for scope in requested if scope not in granted]
    if wider:
        raise InvalidScope(f"scope {wider[0][:40]} exceeds the original grant", "scope")
    return requested


def _covers(known: str, requested: str) -> bool:
    # a requested URI at or below a known resource's path (same origin) names it
    if requested == known:
        return True
    return "?" not in known and requested.startswith(known + "/")


def canonical_resources(
    values: Sequence[str], known: Collection[str] | None = None
) -> tuple[str, ...]:
    """The canonical resources a request names, each mapped to the known resource it is.

    With ``known`` (canonical resources of our protected proxies) a resource we do not
    protect is ``invalid_target``; a URI below a known resource's path names that
    resource, so the audience always equals a proxy's resource URL.
    """
    if len(values) > MAX_RESOURCES:
        raise InvalidTarget("too many resource parameters", "resource")
    result: list[str] = []
    for value in values:
        resource = canonical_resource(value)
        if known is not None:
            matches = sorted((k for k in known if _covers(k, resource)), key=len, reverse=True)
            if not matches:
                raise InvalidTarget(f"unknown resource {resource[:100]}", "resource")
            resource = matches[0]
        if resource not in result:
            result.append(resource)
    return tuple(result)


def resolve_audience(
    requested: tuple[str, ...],
    *,
    allowed: Collection[str],
    default: tuple[str, ...] = (),
) -> tuple[str, ...]:
    """The token audience: the requested resources, every one allowed for the user.

    A requested resource the user may not use is ``invalid_target`` (the token is never
    silently narrowed to something else).  Without ``resource`` the ``default`` ones the
    user may use are granted; none at all is ``invalid_target``.
    """
    if requested:
        forbidden = [resource for resource in requested if resource not in allowed]
        if forbidden:
            raise InvalidTarget(
                f"resource {forbidden[0][:100]} is not allowed for this user", "resource"
            )
        return requested
    audience = tuple(resource for resource in default if resource in allowed)
    if not audience:
        raise InvalidTarget("no resource requested and none allowed by default", "resource")
    return audience
