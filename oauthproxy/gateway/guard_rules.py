"""The guard's pure rules: what a request must present, excluded paths, login allowlists.

No I/O: :func:`requirement_of` reads the routing decision (a matching route with
``override_proxy_auth`` replaces the proxy's settings), :func:`is_excluded` matches the
canonical path without its query (ATK-11), :func:`login_allowed` checks a GitHub login.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from attrs import frozen
from twisted.web.server import Request

from oauthproxy.gateway.paths import BadPath, canonical_path, split_target
from oauthproxy.gateway.routing import Forward
from oauthproxy.model import AuthMode, AuthType


@frozen
class Requirement:
    """What a request must present: the effective auth of its proxy or route."""

    auth_type: AuthType
    mode: AuthMode = "forward"
    scopes: tuple[str, ...] = ()
    users: tuple[str, ...] = ()
    excluded_paths: tuple[str, ...] = ()


def requirement_of(decision: Forward) -> Requirement | None:
    """The requirement for a forwarded request, None when nothing is required.

    A matching route with ``override_proxy_auth`` replaces the proxy's settings; the
    proxy's mode and excluded paths still apply to an ``oauth`` route.
    """
    auth = decision.proxy.auth
    route_auth = decision.route.auth if decision.route is not None else None
    if route_auth is not None and route_auth.override_proxy_auth:
        if route_auth.auth_type == "none":
            return None
        return Requirement(
            route_auth.auth_type,
            auth.auth_mode if auth is not None else "forward",
            route_auth.oauth_scopes,
            route_auth.oauth_allowed_users,
            auth.excluded_paths if auth is not None else (),
        )
    if auth is None or auth.auth_type == "none":
        return None
    return Requirement(
        auth.auth_type,
        auth.auth_mode,
        auth.required_scopes,
        auth.required_users,
        auth.excluded_paths,
    )


def _pattern(pattern: str) -> re.Pattern[str]:
    # "*" is any run of characters; "/x/*" also covers "/x" (as admin auth rules do)
    tail = ""
    if pattern.endswith("/*"):
        pattern, tail = pattern[:-2], "(?:/.*)?"
    return re.compile(".*".join(re.escape(p) for p in pattern.split("*")) + tail, re.DOTALL)


def is_excluded(path: str, patterns: Iterable[str]) -> bool:
    """Whether the canonical ``path`` (no query) matches an excluded-path pattern (ATK-11).

    A pattern without ``*`` matches the path itself and everything below it.
    """
    for pattern in patterns:
        if "*" in pattern:
            if _pattern(pattern).fullmatch(path):
                return True
        elif path == pattern or path.startswith(pattern.rstrip("/") + "/"):
            return True
    return False


def login_allowed(username: str, allowlist: Sequence[str]) -> bool:
    """Whether a login passes an allowlist (empty = no restriction of its own).

    ``org:``/``team:`` entries cannot be checked here (the token carries no membership):
    they were checked when the token was issued, and the token's audience names this
    proxy only if the user passed them (BCP-3), so such a list admits the audience.
    """
    if not allowlist:
        return True
    login = username.casefold()
    for entry in allowlist:
        entry = entry.strip()
        if entry == "*" or entry.casefold() == login:
            return True
        if entry.startswith(("org:", "team:")):
            return True
    return False


def request_path(request: Request) -> str | None:
    """The canonical path of the client's request, without the query; None if refused."""
    path, _query = split_target(request.uri)
    try:
        return canonical_path(path)
    except BadPath:
        return None
