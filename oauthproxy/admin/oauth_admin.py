"""``/oauth/``: the authorization server's clients, sessions and tokens (admin token only).

Sessions are token families (one login of a user with a client, renewed by refresh
tokens); tokens are the access tokens issued and not yet expired.  Revoking publishes
``oauth_revocation`` records, so every daemon refuses the tokens within a second
(MCP-17); revoking by user or client also revokes their families' refresh tokens.
Secrets (client secrets, refresh tokens, registration tokens) are never shown.
"""

from __future__ import annotations

from typing import ClassVar

from attrs import define, evolve, field
from klein import Klein
from twisted.internet.interfaces import IReactorTime

from oauthproxy.admin.endpoint import ApiContext, Call, Reply, endpoint
from oauthproxy.admin.listing import page_query, page_schema, paginate
from oauthproxy.admin.schema import Schema, array, boolean, integer, nullable, number, obj, string
from oauthproxy.errors import InvalidInput, NotFound
from oauthproxy.interfaces import IOAuthStore, ISnapshotSource
from oauthproxy.model import OAuthAccessToken
from oauthproxy.oauth.errors import OAuth2Error
from oauthproxy.oauth.grants import new_secret
from oauthproxy.oauth.records import OAuthClient, TokenFamily
from oauthproxy.oauth.registration import new_client, validate_client_metadata
from oauthproxy.oauth.revocation import Revoker

_ID = string(min_length=1, max_length=2000, description="an identifier")
#: identifiers in a path stay short: Twisted refuses request lines over 16 KiB
_PATH_ID = string(min_length=1, max_length=255, description="an identifier")
_TEXT = string(max_length=2000)
_TIME = number(minimum=0, description="POSIX seconds")
_NAMES = array(_TEXT, max_items=100)

_CLIENT_FIELDS: dict[str, Schema] = {
    "client_id": _ID,
    "client_name": _TEXT,
    "source": string(enum=("static", "dcr", "cimd")),
    "redirect_uris": _NAMES,
    "token_endpoint_auth_method": _TEXT,
    "application_type": _TEXT,
    "client_id_issued_at": _TIME,
    "last_used_at": nullable(_TIME),
}
CLIENT = obj(_CLIENT_FIELDS, required=tuple(_CLIENT_FIELDS))
CLIENT_CREATE = obj(
    {
        "client_name": string(min_length=1, max_length=500),
        "redirect_uris": array(string(min_length=1, max_length=2000), max_items=20),
        "token_endpoint_auth_method": string(
            enum=("none", "client_secret_basic", "client_secret_post")
        ),
        "scope": string(max_length=1000),
    },
    required=("client_name", "redirect_uris"),
)
CLIENT_ISSUED = obj(
    {
        **_CLIENT_FIELDS,
        "client_secret": nullable(string(max_length=200, description="shown once")),
    },
    required=(*_CLIENT_FIELDS, "client_secret"),
)
_SESSION_FIELDS: dict[str, Schema] = {
    "session_id": _ID,
    "client_id": _ID,
    "username": _TEXT,
    "subject": _TEXT,
    "scopes": _NAMES,
    "audience": _NAMES,
    "created_at": _TIME,
    "revoked_at": nullable(_TIME),
}
SESSION = obj(_SESSION_FIELDS, required=tuple(_SESSION_FIELDS))
_TOKEN_FIELDS: dict[str, Schema] = {
    "jti": _ID,
    "session_id": _ID,
    "client_id": _ID,
    "username": _TEXT,
    "scopes": _NAMES,
    "audience": _NAMES,
    "issued_at": _TIME,
    "expires_at": _TIME,
    "revoked": boolean(),
}
ACCESS_TOKEN = obj(_TOKEN_FIELDS, required=tuple(_TOKEN_FIELDS))
REVOKE = obj(
    {"username": string(min_length=1, max_length=100), "client_id": _ID},
    description="revoke every session and token of a user, a client, or both",
)
REVOKED = obj(
    {"sessions": integer(minimum=0), "access_tokens": integer(minimum=0)},
    required=("sessions", "access_tokens"),
)
_COUNT = integer(minimum=0)
METRICS = obj(
    {
        "clients": obj({"static": _COUNT, "dcr": _COUNT, "cimd": _COUNT}),
        "sessions_active": _COUNT,
        "sessions_revoked": _COUNT,
        "access_tokens_live": _COUNT,
        "revocations": _COUNT,
        "signing_keys": _COUNT,
    },
    required=(
        "clients",
        "sessions_active",
        "sessions_revoked",
        "access_tokens_live",
        "revocations",
        "signing_keys",
    ),
)
_FILTERS = {"username": string(max_length=100), "client_id": string(max_length=2000)}


def client_json(client: OAuthClient) -> dict[str, object]:
    """The public view of a client (no secret, no registration token)."""
    return {
        "client_id": client.client_id,
        "client_name": client.client_name,
        "source": client.source,
        "redirect_uris": list(client.redirect_uris),
        "token_endpoint_auth_method": client.token_endpoint_auth_method,
        "application_type": client.application_type,
        "client_id_issued_at": client.client_id_issued_at,
        "last_used_at": client.last_used_at,
    }


def session_json(family: TokenFamily) -> dict[str, object]:
    """A token family as a session."""
    return {
        "session_id": family.family_id,
        "client_id": family.client_id,
        "username": family.user.username,
        "subject": family.user.subject,
        "scopes": list(family.scopes),
        "audience": list(family.audience),
        "created_at": family.created_at,
        "revoked_at": family.revoked_at,
    }


@define
class OAuthAdminResource:
    """The ``/oauth/`` endpoints."""

    app: ClassVar[Klein] = Klein()
    api: ApiContext
    store: IOAuthStore
    snapshots: ISnapshotSource
    clock: IReactorTime
    revoker: Revoker = field(init=False)

    def __attrs_post_init__(self) -> None:
        """Revocations go through the same code as the protocol endpoints."""
        self.revoker = Revoker(self.store, self.clock)

    def _token_json(self, token: OAuthAccessToken) -> dict[str, object]:
        """An issued access token (never the token itself)."""
        return {
            "jti": token.jti,
            "session_id": token.family_id,
            "client_id": token.client_id,
            "username": token.username,
            "scopes": list(token.scopes),
            "audience": list(token.audience),
            "issued_at": token.issued_at,
            "expires_at": token.expires_at,
            "revoked": token.jti in self.snapshots.current.oauth_revocations,
        }

    @endpoint(app, "GET", "/oauth/clients", summary="List OAuth clients", tags=("oauth",),
              auth="admin", query=page_query({"source": string(enum=("static", "dcr", "cimd"))}),
              returns={200: page_schema(CLIENT)})  # fmt: skip
    async def list_clients(self, call: Call) -> object:
        """Registered and cached clients, by client_id."""
        return paginate(await self.store.list_clients(), call.query, client_json, ("source",))

    @endpoint(app, "POST", "/oauth/clients", summary="Pre-register an OAuth client",
              tags=("oauth",), auth="admin", body=CLIENT_CREATE,
              returns={201: CLIENT_ISSUED})  # fmt: skip
    async def create_client(self, call: Call) -> object:
        """A pre-registered (trusted) client; a confidential one's secret is shown once."""
        try:
            metadata = validate_client_metadata(call.body)
        except OAuth2Error as error:
            raise InvalidInput(error.detail, field=f"/{error.field or 'redirect_uris'}") from None
        secret = None if metadata.is_public else new_secret()
        client = evolve(
            new_client(
                metadata,
                client_id=new_secret(),
                now=self.clock.seconds(),
                client_secret=secret,
                registration_token=None,
                source="static",
            ),
            metadata_key="",
        )
        await self.store.put_client(client)
        body = {**client_json(client), "client_secret": secret}
        return Reply(201, body, {"location": f"/oauth/clients/{client.client_id}"})

    @endpoint(app, "GET", "/oauth/clients/{client_id}", summary="Show an OAuth client",
              tags=("oauth",), auth="admin", params={"client_id": _PATH_ID},
              returns={200: CLIENT})  # fmt: skip
    async def show_client(self, call: Call) -> object:
        """One client."""
        client = await self.store.get_client(call.params["client_id"])
        if client is None:
            raise NotFound(f"no OAuth client {call.params['client_id']!r}")
        return client_json(client)

    @endpoint(app, "DELETE", "/oauth/clients/{client_id}",
              summary="Delete an OAuth client and revoke its tokens", tags=("oauth",),
              auth="admin", params={"client_id": _PATH_ID}, returns={204: None})  # fmt: skip
    async def delete_client(self, call: Call) -> object:
        """Forget the client; its sessions and tokens are revoked."""
        client_id = call.params["client_id"]
        if not await self.store.delete_client(client_id):
            raise NotFound(f"no OAuth client {client_id!r}")
        await self.revoker.revoke_where(client_id=client_id, reason="client deleted")
        return Reply(204)

    @endpoint(app, "GET", "/oauth/sessions", summary="List OAuth sessions (token families)",
              tags=("oauth",), auth="admin", query=page_query(_FILTERS),
              returns={200: page_schema(SESSION)})  # fmt: skip
    async def list_sessions(self, call: Call) -> object:
        """Sessions, oldest first, filtered by username and client_id."""
        families = await self.store.list_families()
        wanted = [
            f
            for f in families
            if call.query.get("username") in (None, f.user.username)
            and call.query.get("client_id") in (None, f.client_id)
        ]
        return paginate(wanted, call.query, session_json)

    @endpoint(app, "DELETE", "/oauth/sessions/{session_id}", summary="Revoke an OAuth session",
              tags=("oauth",), auth="admin", params={"session_id": _PATH_ID},
              returns={204: None})  # fmt: skip
    async def revoke_session(self, call: Call) -> object:
        """Revoke the family: its refresh tokens and live access tokens."""
        session_id = call.params["session_id"]
        if await self.store.get_family(session_id) is None:
            raise NotFound(f"no OAuth session {session_id!r}")
        await self.revoker.revoke_family(session_id, "revoked by an operator")
        return Reply(204)

    @endpoint(app, "GET", "/oauth/tokens", summary="List live OAuth access tokens",
              tags=("oauth",), auth="admin", query=page_query(_FILTERS),
              returns={200: page_schema(ACCESS_TOKEN)})  # fmt: skip
    async def list_tokens(self, call: Call) -> object:
        """Access tokens not yet expired, oldest first."""
        now = self.clock.seconds()
        tokens = [t for t in await self.store.list_access_tokens() if t.expires_at > now]
        return paginate(tokens, call.query, self._token_json, ("username", "client_id"))

    @endpoint(app, "DELETE", "/oauth/tokens/{jti}", summary="Revoke an OAuth access token",
              tags=("oauth",), auth="admin", params={"jti": _PATH_ID},
              returns={204: None})  # fmt: skip
    async def revoke_token(self, call: Call) -> object:
        """Revoke one access token by jti."""
        for token in await self.store.list_access_tokens():
            if token.jti == call.params["jti"]:
                await self.revoker.revoke_access_token(token, "revoked by an operator")
                return Reply(204)
        raise NotFound(f"no live OAuth access token {call.params['jti']!r}")

    @endpoint(app, "POST", "/oauth/revoke", summary="Revoke by user and/or client",
              tags=("oauth",), auth="admin", body=REVOKE,
              returns={200: REVOKED})  # fmt: skip
    async def revoke(self, call: Call) -> object:
        """Revoke every session and token of ``username`` and/or ``client_id``."""
        username, client_id = call.body.get("username"), call.body.get("client_id")
        if username is None and client_id is None:
            raise InvalidInput("name a username, a client_id or both", field="/username")
        counts = await self.revoker.revoke_where(
            username=username, client_id=client_id, reason="revoked by an operator"
        )
        return {"sessions": counts["families"], "access_tokens": counts["access_tokens"]}

    @endpoint(app, "GET", "/oauth/metrics", summary="OAuth server counters", tags=("oauth",),
              auth="admin", returns={200: METRICS})  # fmt: skip
    async def metrics(self, call: Call) -> object:
        """How many clients, sessions, live tokens, revocations and keys there are."""
        now = self.clock.seconds()
        clients = {"static": 0, "dcr": 0, "cimd": 0}
        for client in await self.store.list_clients():
            clients[client.source] += 1
        families = await self.store.list_families()
        tokens = await self.store.list_access_tokens()
        snapshot = self.snapshots.current
        return {
            "clients": clients,
            "sessions_active": sum(1 for f in families if f.revoked_at is None),
            "sessions_revoked": sum(1 for f in families if f.revoked_at is not None),
            "access_tokens_live": sum(1 for t in tokens if t.expires_at > now),
            "revocations": len(snapshot.oauth_revocations),
            "signing_keys": len(snapshot.oauth_signing_keys),
        }
