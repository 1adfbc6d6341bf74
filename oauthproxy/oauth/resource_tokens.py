"""The authorization server's machine-facing endpoints, mixed into ``OAuthServer``.

``/token`` (authorization_code with PKCE S256, O21-1..3; refresh_token rotation with
reuse detection that revokes the family, O21-9, BCP-4, ATK-34; ``Cache-Control:
no-store``; failures rate-limited per source, ATK-37), ``/introspect`` (RFC 7662:
confidential clients, or the admin API token as bearer), ``/revoke`` (RFC 7009: 200 even
for unknown tokens).  Registration is in :mod:`oauthproxy.oauth.resource_registration`,
``/jwks`` and ``/verify`` in :mod:`oauthproxy.oauth.resource_verify`.  Routes live on
:data:`oauth_app`, the Klein app of :class:`~oauthproxy.oauth.server.OAuthServer`.

The grants are written so that concurrent requests cannot leave a live branch of a
token family behind (ATK-34, ATK-35): a refresh token is rotated by compare-and-set, so
exactly one request exchanges it; every grant records its access token *before* it
stores the family, and the store keeps a revoked family revoked and tells the grant,
which then takes its access token back.  Whichever of a grant and a revocation comes
second sees the other: the revocation lists the access token, or the grant finds the
family revoked.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Mapping, Sequence

from attrs import evolve
from joserfc.jwk import RSAKey
from klein import Klein
from twisted.internet.interfaces import IReactorTime
from twisted.web.server import Request

from oauthproxy.interfaces import IOAuthStore, ISnapshotSource
from oauthproxy.model import OAuthAccessToken
from oauthproxy.oauth import grants
from oauthproxy.oauth.access import allowed_resources, parse_scope, user_allowed
from oauthproxy.oauth.challenges import bearer_token
from oauthproxy.oauth.errors import (
    InvalidClient,
    InvalidGrant,
    InvalidRequest,
    InvalidToken,
    OAuth2Error,
    RateLimited,
    UnsupportedGrantType,
)
from oauthproxy.oauth.limits import SourceLimiter
from oauthproxy.oauth.records import OAuthClient, RefreshTokenRecord, TokenFamily, token_hash
from oauthproxy.oauth.resource_http import (
    OAuthSettings,
    client_source,
    form_params,
    json_answer,
    render_oauth_error,
    set_header,
    single,
)
from oauthproxy.oauth.revocation import Revoker
from oauthproxy.oauth.tokens import introspection_response, mint_access_token
from oauthproxy.oauth.verifier import SnapshotVerifier
from oauthproxy.storage.crypto import SecretBox

#: the Klein app of the authorization server (routes of both modules)
oauth_app = Klein()


class TokenEndpoints:
    """The endpoints of the module docstring; ``OAuthServer`` provides the attributes."""

    settings: OAuthSettings
    store: IOAuthStore
    snapshots: ISnapshotSource
    clock: IReactorTime
    signing_key: RSAKey
    verifier: SnapshotVerifier
    revoker: Revoker
    registrations: SourceLimiter
    failures: SourceLimiter
    #: seals the kept token responses of a retry window (None: no window)
    box: SecretBox | None

    async def client(self, client_id: str | None) -> OAuthClient | None:
        """A pre-registered or stored client (provided by ``OAuthServer``)."""
        raise NotImplementedError

    def protected_resources(self) -> dict[str, tuple[str, ...]]:
        """Resource URI -> allowlist (provided by ``OAuthServer``)."""
        raise NotImplementedError

    def current_signing_key(self) -> RSAKey:
        """The key that signs now (provided by ``OAuthServer``)."""
        raise NotImplementedError

    async def authenticated_client(
        self, request: Request, form: Mapping[str, Sequence[str]]
    ) -> OAuthClient:
        """The client of a token-side request, authenticated (Basic or body, O21-11)."""
        basic = grants.parse_basic_auth(request.getHeader("authorization"))
        if basic is not None:
            if single(form, "client_secret") is not None:
                raise InvalidRequest("use one client authentication method", "client_secret")
            client_id, basic_secret = basic
            secret: str | None = basic_secret
        else:
            client_id = single(form, "client_id") or ""
            secret = single(form, "client_secret")
        client = await self.client(client_id)
        return grants.authenticate_client(client, secret=secret, now=self.clock.seconds())

    def sign(
        self, family: TokenFamily, scopes: tuple[str, ...], audience: tuple[str, ...]
    ) -> tuple[str, OAuthAccessToken]:
        """Sign an access token of ``family``: the token and its record (not stored yet)."""
        token, claims = mint_access_token(
            self.current_signing_key(),
            issuer=self.settings.base,
            subject=family.user.subject,
            username=family.user.username,
            audience=audience,
            scopes=scopes,
            client_id=family.client_id,
            now=self.clock.seconds(),
            lifetime=self.settings.access_token_lifetime,
        )
        record = OAuthAccessToken(
            jti=claims.jti,
            family_id=family.family_id,
            client_id=family.client_id,
            username=family.user.username,
            subject=family.user.subject,
            audience=claims.audience,
            scopes=claims.scopes,
            issued_at=claims.issued_at,
            expires_at=claims.expires_at,
        )
        return token, record

    async def mint(
        self, family: TokenFamily, scopes: tuple[str, ...], audience: tuple[str, ...]
    ) -> tuple[str, int]:
        """Sign an access token of ``family`` and remember its jti: ``(token, expires_in)``."""
        token, record = self.sign(family, scopes, audience)
        await self.store.put_access_token(record)
        return token, self.settings.access_token_lifetime

    async def keep_family(
        self, family: TokenFamily, expires_at: float, access: OAuthAccessToken, grant: str
    ) -> None:
        """Record ``access``, then store ``family``; if it was revoked meanwhile, undo.

        The order is what makes a racing revocation safe (module docstring): the access
        token is recorded first, so a revocation that lists tokens after this sees it,
        and one that came earlier left the family revoked, which the store reports.
        """
        await self.store.put_access_token(access)
        stored = await self.store.put_family(family, expires_at)
        if stored.revoked_at is not None:
            await self.revoker.revoke_access_token(access, "token family revoked")
            raise InvalidGrant(f"the {grant.replace('_', ' ')} was revoked", grant)

    @oauth_app.route("/token", methods=["POST"])
    async def token(self, request: Request) -> bytes:
        """The token endpoint; a failure that proves theft revokes the family (O21-6).

        Failures count against the source's budget; once it is spent, 429 (ATK-37).
        """
        source = client_source(request)
        try:
            wait = self.failures.retry_after(source)
            if wait is not None:
                raise RateLimited("too many failed requests", wait)
            form = form_params(request)
            client = await self.authenticated_client(request, form)
            grant_type = single(form, "grant_type")
            if grant_type == "authorization_code":
                body = await self._code_grant(client, form)
            elif grant_type == "refresh_token":
                body = await self._refresh_grant(client, form)
            else:
                raise UnsupportedGrantType("only authorization_code and refresh_token")
        except OAuth2Error as error:
            if error.revoke_family is not None:
                await self.revoker.revoke_family(error.revoke_family, "token reuse")
            if not isinstance(error, RateLimited):
                self.failures.spend(source)
            set_header(request, "Cache-Control", "no-store")
            return render_oauth_error(request, error)
        for name, value in grants.TOKEN_RESPONSE_HEADERS:
            set_header(request, name, value)
        return json.dumps(body).encode("utf-8")

    async def _code_grant(
        self, client: OAuthClient, form: Mapping[str, Sequence[str]]
    ) -> dict[str, object]:
        """Redeem a code (single use, bound to client, URI and PKCE challenge)."""
        code = single(form, "code")
        if not code:
            raise InvalidRequest("code is required", "code")
        now = self.clock.seconds()
        record = await self.store.redeem_code(token_hash(code), now)
        redemption = grants.redeem_code(
            record,
            client=client,
            code_verifier=single(form, "code_verifier"),
            redirect_uri=single(form, "redirect_uri"),
            resources=form.get("resource", ()),
            now=now,
        )
        family = redemption.family
        token, access = self.sign(family, family.scopes, redemption.audience)
        expires_in = self.settings.access_token_lifetime
        if "refresh_token" in client.grant_types:
            lifetime = self.settings.refresh_token_lifetime
            refresh, refresh_record = grants.new_refresh_token(
                family, scopes=family.scopes, now=now, lifetime=lifetime
            )
            await self.keep_family(family, now + lifetime, access, "code")
            await self.store.put_refresh(refresh_record)
        else:
            # no refresh token: the session lasts as long as its access token
            refresh = None
            await self.keep_family(family, now + expires_in, access, "code")
        await self.store.touch_client(client.client_id, now)
        return grants.token_response(
            token, expires_in=expires_in, scopes=family.scopes, refresh_token=refresh
        )

    async def _refresh_grant(
        self, client: OAuthClient, form: Mapping[str, Sequence[str]]
    ) -> dict[str, object]:
        """Rotate a refresh token; the user's allowlists are applied again."""
        value = single(form, "refresh_token")
        if not value:
            raise InvalidRequest("refresh_token is required", "refresh_token")
        record = await self.store.get_refresh(token_hash(value))
        family = None if record is None else await self.store.get_family(record.family_id)
        allowed: set[str] = {self.settings.base}
        if family is not None:
            if not user_allowed(family.user, self.settings.allowed_users):
                raise InvalidGrant("the user may no longer log in", "refresh_token")
            # the allowlists may have changed since the login (MCP-11)
            allowed |= allowed_resources(
                family.user, self.protected_resources(), self.settings.allowed_users
            )
        now = self.clock.seconds()

        def rotate(current: RefreshTokenRecord | None) -> grants.Rotation | grants.Replay:
            return grants.rotate_refresh_token(
                current,
                family,
                client=client,
                requested_scopes=parse_scope(single(form, "scope")),
                resources=form.get("resource", ()),
                allowed=allowed,
                now=now,
                lifetime=self.settings.refresh_token_lifetime,
                retry_window=self.settings.refresh_retry_window,
            )

        rotation = rotate(record)
        if isinstance(rotation, grants.Replay):
            return self.replayed(rotation.rotated)
        token, access = self.sign(rotation.family, rotation.scopes, rotation.audience)
        body = grants.token_response(
            token,
            expires_in=self.settings.access_token_lifetime,
            scopes=rotation.scopes,
            refresh_token=rotation.new_token,
        )
        rotated = self.with_sealed_response(rotation.rotated, body)
        assert record is not None  # rotate_refresh_token refuses an unknown token
        stored = await self.store.replace_refresh(record, rotated)
        if stored != rotated:
            # another request exchanged (or revoked) this token first: this one is a
            # retry at best (the same pair), a reuse otherwise (ATK-34)
            again = rotate(stored)
            if isinstance(again, grants.Replay):
                return self.replayed(again.rotated)
            raise InvalidGrant("the refresh token was already used", "refresh_token")
        await self.keep_family(
            rotation.family, rotation.new_record.expires_at, access, "refresh_token"
        )
        await self.store.put_refresh(rotation.new_record)
        await self.store.touch_client(client.client_id, now)
        return body

    def with_sealed_response(
        self, rotated: RefreshTokenRecord, body: dict[str, object]
    ) -> RefreshTokenRecord:
        """``rotated`` keeping ``body`` sealed, when a retry window is configured."""
        if self.settings.refresh_retry_window <= 0 or self.box is None:
            return rotated
        sealed = self.box.seal(json.dumps(body), rotated.token_hash)
        return evolve(rotated, sealed_response=sealed)

    def replayed(self, rotated: RefreshTokenRecord) -> dict[str, object]:
        """The response a rotation gave, for a retry inside the window (ATK-34)."""
        assert self.box is not None and rotated.sealed_response is not None
        body: dict[str, object] = json.loads(
            self.box.open(rotated.sealed_response, rotated.token_hash)
        )
        return body

    def admin_bearer(self, request: Request) -> bool:
        """Whether the request carries the admin API token (``bearer`` introspection auth)."""
        value = bearer_token(request.getHeader("authorization"))
        if value is None:
            return False
        digest = token_hash(value)
        return any(
            t.is_admin and hmac.compare_digest(t.token_hash, digest)
            for t in self.snapshots.current.tokens.values()
        )

    @oauth_app.route("/introspect", methods=["POST"])
    async def introspect(self, request: Request) -> bytes:
        """RFC 7662 for confidential clients; nothing about why a token is inactive."""
        try:
            form = form_params(request)
            if not self.admin_bearer(request):
                client = await self.authenticated_client(request, form)
                if client.is_public:
                    raise InvalidClient("introspection needs a confidential client")
            token = single(form, "token")
            if not token:
                raise InvalidRequest("token is required", "token")
        except OAuth2Error as error:
            return render_oauth_error(request, error)
        try:
            claims = self.verifier.check(token, None)
        except InvalidToken:
            claims = None
        return json_answer(request, introspection_response(claims))

    @oauth_app.route("/revoke", methods=["POST"])
    async def revoke(self, request: Request) -> bytes:
        """RFC 7009: revoke a refresh token (its family) or an access token; 200 always."""
        try:
            form = form_params(request)
            client = await self.authenticated_client(request, form)
            token = single(form, "token")
            if not token:
                raise InvalidRequest("token is required", "token")
        except OAuth2Error as error:
            return render_oauth_error(request, error)
        record = await self.store.get_refresh(token_hash(token))
        if record is not None and record.client_id == client.client_id:
            await self.revoker.revoke_family(record.family_id, "revoked by the client")
        else:
            await self._revoke_access_token(token, client)
        set_header(request, "Cache-Control", "no-store")
        return b""

    async def _revoke_access_token(self, token: str, client: OAuthClient) -> None:
        """Revoke an access token of ``client`` (someone else's is ignored, RFC 7009 §2.1)."""
        try:
            claims = self.verifier.check(token, None)
        except InvalidToken:
            return
        if claims.client_id != client.client_id:
            return
        for issued in await self.store.list_access_tokens():
            if issued.jti == claims.jti:
                await self.revoker.revoke_access_token(issued, "revoked by the client")
                return
