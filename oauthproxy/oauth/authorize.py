"""The ``/authorize`` decision: validate a request, and shape every answer to it.

Validation runs in two phases.  Until the client and its redirect URI are verified,
an error is shown to the user and never redirected (O21-5).  After that, an error is
redirected back only to a *trusted* client, i.e. a pre-registered one, or one the
user has already approved; a dynamically registered or CIMD client's URI is
untrusted, so a provoked error (``invalid_scope``…) gets an error page instead of an
automatic redirect (O21-16, BCP-7, ATK-3).  Every authorization response, success or
error, carries ``iss`` (RFC 9207, MCP-12, ATK-24).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from urllib.parse import urlencode

from attrs import frozen

from oauthproxy.oauth import pkce
from oauthproxy.oauth.access import canonical_resources, parse_scope, resolve_scopes
from oauthproxy.oauth.errors import (
    InvalidClient,
    InvalidRequest,
    OAuth2Error,
    UnauthorizedClient,
    UnsupportedResponseType,
)
from oauthproxy.oauth.records import AuthorizationRequest, OAuthClient
from oauthproxy.oauth.redirects import find_redirect_uri

#: parameters that must appear at most once (RFC 6749 §3.1); ``resource`` may repeat
_SINGLE = (
    "client_id",
    "redirect_uri",
    "response_type",
    "state",
    "scope",
    "code_challenge",
    "code_challenge_method",
)
MAX_STATE_LENGTH = 1024
#: redirects of the authorization endpoint use 303, never 307 (O21-12)
REDIRECT_STATUS = 303


@frozen
class ErrorPage:
    """Show this error to the user; do not redirect anywhere."""

    error: OAuth2Error


@frozen
class ErrorRedirect:
    """Redirect (303, O21-12) to ``location``: the client's URI with error, state and iss."""

    location: str
    error: OAuth2Error


AuthorizationOutcome = AuthorizationRequest | ErrorPage | ErrorRedirect


def authorization_response_url(redirect_uri: str, params: Mapping[str, str | None]) -> str:
    """``redirect_uri`` with ``params`` added to its query (existing query kept)."""
    query = urlencode([(k, v) for k, v in params.items() if v is not None])
    return f"{redirect_uri}{'&' if '?' in redirect_uri else '?'}{query}"


def success_redirect(request: AuthorizationRequest, code: str, issuer: str) -> str:
    """The successful authorization response: ``code``, ``state`` and ``iss`` (ATK-24)."""
    return authorization_response_url(
        request.redirect_uri, {"code": code, "state": request.state, "iss": issuer}
    )


def error_response(
    error: OAuth2Error,
    *,
    issuer: str,
    redirect_uri: str | None,
    state: str | None,
    trusted: bool,
) -> ErrorPage | ErrorRedirect:
    """How to answer an authorization error.

    Redirect only to a verified ``redirect_uri`` of a trusted client; otherwise an error
    page (O21-5, O21-16, ATK-3).  The redirect carries ``iss`` (ATK-24).
    """
    if redirect_uri is None or not trusted:
        return ErrorPage(error)
    location = authorization_response_url(
        redirect_uri,
        {
            "error": error.error,
            "error_description": error.description,
            "state": state,
            "iss": issuer,
        },
    )
    return ErrorRedirect(location, error)


def client_is_trusted(client: OAuthClient, approved: bool) -> bool:
    """Whether errors may be redirected to this client's registered URIs.

    Pre-registered clients are trusted; dynamically registered and CIMD clients only
    once the user has approved them on the consent page.
    """
    return client.source == "static" or approved


def _single(params: Mapping[str, Sequence[str]], name: str) -> str | None:
    values = params.get(name, ())
    if len(values) > 1:
        raise InvalidRequest(f"{name} must not be repeated", name)
    return values[0] if values else None


def check_authorization_request(
    params: Mapping[str, Sequence[str]],
    client: OAuthClient | None,
    *,
    issuer: str,
    scopes_supported: Collection[str],
    default_scopes: tuple[str, ...] = (),
    known_resources: Collection[str] | None = None,
    approved: bool = False,
) -> AuthorizationOutcome:
    """Validate an ``/authorize`` request (query parameters, possibly repeated).

    ``client`` is the record looked up by ``client_id`` (None if unknown);
    ``approved`` says whether the user's signed consent cookie already covers it.
    """
    try:
        client_id = _single(params, "client_id")
        requested_uri = _single(params, "redirect_uri")
    except InvalidRequest as e:
        return ErrorPage(e)
    if not client_id:
        return ErrorPage(InvalidRequest("client_id is required", "client_id"))
    if client is None or client.client_id != client_id:
        return ErrorPage(InvalidClient("unknown client_id", "client_id"))
    redirect_uri = find_redirect_uri(requested_uri, client.redirect_uris)
    if redirect_uri is None:
        return ErrorPage(
            InvalidRequest("redirect_uri is missing or not registered", "redirect_uri")
        )
    # from here on the redirect URI is verified
    state_values = params.get("state", ())
    state = state_values[0] if len(state_values) == 1 else None
    try:
        return _validated(
            params,
            client,
            redirect_uri=redirect_uri,
            redirect_uri_given=requested_uri is not None,
            scopes_supported=scopes_supported,
            default_scopes=default_scopes,
            known_resources=known_resources,
        )
    except OAuth2Error as e:
        return error_response(
            e,
            issuer=issuer,
            redirect_uri=redirect_uri,
            state=state,
            trusted=client_is_trusted(client, approved),
        )


def _validated(
    params: Mapping[str, Sequence[str]],
    client: OAuthClient,
    *,
    redirect_uri: str,
    redirect_uri_given: bool,
    scopes_supported: Collection[str],
    default_scopes: tuple[str, ...],
    known_resources: Collection[str] | None,
) -> AuthorizationRequest:
    values = {name: _single(params, name) for name in _SINGLE}
    response_type = values["response_type"]
    if not response_type:
        raise InvalidRequest("response_type is required", "response_type")
    if response_type != "code":
        # the implicit grant is gone in OAuth 2.1 (O21-7)
        raise UnsupportedResponseType("only response_type=code is supported", "response_type")
    if "code" not in client.response_types or "authorization_code" not in client.grant_types:
        raise UnauthorizedClient("the client may not use the authorization code grant")
    state = values["state"]
    if state is not None and len(state) > MAX_STATE_LENGTH:
        raise InvalidRequest("state is too long", "state")
    challenge = pkce.check_challenge(values["code_challenge"], values["code_challenge_method"])
    scopes = resolve_scopes(
        parse_scope(values["scope"]),
        supported=scopes_supported,
        client_scope=client.scope,
        default=default_scopes,
    )
    resources = canonical_resources(list(params.get("resource", ())), known_resources)
    return AuthorizationRequest(
        client_id=client.client_id,
        redirect_uri=redirect_uri,
        redirect_uri_given=redirect_uri_given,
        code_challenge=challenge,
        code_challenge_method=pkce.S256,
        scopes=scopes,
        resources=resources,
        state=state,
    )
