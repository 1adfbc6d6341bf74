"""``/oauth/initial-tokens``: initial access tokens for closed registration (admin token only).

With ``OAUTH_REGISTRATION=token`` a client may register (RFC 7591) only with an initial
access token in ``Authorization: Bearer`` (RFC 7591 §3, ATK-37).  The operator creates
them here, each with an optional number of uses and lifetime, and hands them to the
people setting up clients.  The token is shown once; the store keeps its SHA-256 only.
"""

from __future__ import annotations

import secrets
from typing import ClassVar

from attrs import define
from klein import Klein
from twisted.internet.interfaces import IReactorTime

from oauthproxy.admin.endpoint import ApiContext, Call, Reply, endpoint
from oauthproxy.admin.listing import page_query, page_schema, paginate
from oauthproxy.admin.schema import Schema, integer, number, obj, string
from oauthproxy.admin.validation import NAME_PATTERN
from oauthproxy.errors import Conflict, NotFound
from oauthproxy.interfaces import IOAuthStore
from oauthproxy.oauth.records import InitialAccessToken, token_hash

TAGS = ("oauth",)
#: initial access tokens start with this, so that a leaked one is recognisable
PREFIX = "oit_"

_NAME = string(min_length=1, max_length=64, pattern=NAME_PATTERN, example="ci")
_FIELDS: dict[str, Schema] = {
    "name": _NAME,
    "created_at": number(minimum=0, description="POSIX seconds"),
    "expires_at": number(minimum=0, description="POSIX seconds; 0 = never"),
    "max_uses": integer(minimum=0, description="registrations allowed; 0 = any number"),
    "uses": integer(minimum=0, description="registrations made with it"),
}
INITIAL_TOKEN = obj(_FIELDS, required=tuple(_FIELDS))
CREATE = obj(
    {
        "name": _NAME,
        "max_uses": integer(minimum=0, maximum=1_000_000, description="0 = any number"),
        "expires_in": integer(minimum=1, maximum=10 * 365 * 86400, description="seconds"),
    },
    required=("name",),
)
ISSUED = obj(
    {**_FIELDS, "token": string(max_length=100, description="shown once")},
    required=(*_FIELDS, "token"),
)


def initial_token_json(token: InitialAccessToken) -> dict[str, object]:
    """The public view of an initial access token (never the token)."""
    return {
        "name": token.name,
        "created_at": token.created_at,
        "expires_at": token.expires_at,
        "max_uses": token.max_uses,
        "uses": token.uses,
    }


@define
class InitialTokenResource:
    """The ``/oauth/initial-tokens`` endpoints."""

    app: ClassVar[Klein] = Klein()
    api: ApiContext
    store: IOAuthStore
    clock: IReactorTime

    @endpoint(app, "GET", "/oauth/initial-tokens", summary="List initial access tokens",
              tags=TAGS, auth="admin", query=page_query(),
              returns={200: page_schema(INITIAL_TOKEN)},
              operation_id="oauth_initial_tokens_list")  # fmt: skip
    async def list_tokens(self, call: Call) -> object:
        """Every initial access token, by name, with its uses."""
        return paginate(await self.store.list_initial_tokens(), call.query, initial_token_json)

    @endpoint(app, "POST", "/oauth/initial-tokens",
              summary="Create an initial access token for client registration (RFC 7591 §3)",
              tags=TAGS, auth="admin", body=CREATE, returns={201: ISSUED}, errors=(409,),
              operation_id="oauth_initial_token_create")  # fmt: skip
    async def create(self, call: Call) -> object:
        """A new token, shown once; ``max_uses`` and ``expires_in`` bound it."""
        value = PREFIX + secrets.token_urlsafe(32)
        now = self.clock.seconds()
        expires_in = call.body.get("expires_in")
        token = InitialAccessToken(
            name=call.body["name"],
            token_hash=token_hash(value),
            created_at=now,
            expires_at=0.0 if expires_in is None else now + expires_in,
            max_uses=call.body.get("max_uses", 0),
        )
        if not await self.store.put_initial_token(token):
            raise Conflict(f"an initial access token {token.name!r} exists", field="/name")
        body = {**initial_token_json(token), "token": value}
        return Reply(201, body, {"location": f"/oauth/initial-tokens/{token.name}"})

    @endpoint(app, "DELETE", "/oauth/initial-tokens/{name}",
              summary="Delete an initial access token (clients it registered stay)",
              tags=TAGS, auth="admin", params={"name": _NAME}, returns={204: None},
              operation_id="oauth_initial_token_delete")  # fmt: skip
    async def delete(self, call: Call) -> object:
        """Forget the token: no registration uses it any more."""
        if not await self.store.delete_initial_token(call.params["name"]):
            raise NotFound(f"no initial access token {call.params['name']!r}", field="name")
        return Reply(204)
