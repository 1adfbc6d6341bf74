"""``/tokens/``: API tokens (create, list, show, delete, rotate).

A token's value is returned once, by create and rotate, and never again: the
store keeps only its SHA-256 digest and no response or log line carries it.
Ownership of token records is by name: a non-admin token sees, rotates and
deletes only itself; only the admin token creates tokens and sees them all.
The admin token itself cannot be deleted here (``oauthproxyctl token-admin``
replaces it on the host).
"""

from __future__ import annotations

from typing import ClassVar

from attrs import define, evolve
from klein import Klein
from twisted.internet.interfaces import IReactorTime

from oauthproxy.admin.access import require_access, require_admin, visible
from oauthproxy.admin.credentials import hash_token, new_token_value
from oauthproxy.admin.endpoint import ApiContext, Call, Reply, endpoint
from oauthproxy.admin.listing import page_query, page_schema, paginate
from oauthproxy.admin.schema import Schema, boolean, nullable, number, obj, string
from oauthproxy.admin.validation import NAME_WORDS
from oauthproxy.errors import Conflict, Forbidden, NotFound
from oauthproxy.interfaces import IStorage
from oauthproxy.model import ADMIN_TOKEN_NAME, ApiToken

TOKEN_NAME = string(
    min_length=1,
    max_length=64,
    pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
    description="letters, digits, '.', '_' and '-'",
    example="ci-deploy",
    error=NAME_WORDS,
)
OWNER_EMAIL = string(max_length=254, format="email", example="ops@example.com")

TOKEN_CREATE = obj(
    {"name": TOKEN_NAME, "owner_email": OWNER_EMAIL},
    required=("name", "owner_email"),
)

_TOKEN_FIELDS: dict[str, Schema] = {
    "name": TOKEN_NAME,
    "owner_email": string(max_length=254),
    "is_admin": boolean(),
    "created_at": number(minimum=0, description="POSIX seconds"),
    "last_used_at": nullable(number(minimum=0)),
    "created_by": string(max_length=64, description="the token that created this one"),
}
TOKEN = obj(_TOKEN_FIELDS, required=tuple(_TOKEN_FIELDS))
TOKEN_ISSUED = obj(
    {**_TOKEN_FIELDS, "token": string(max_length=128, description="the value, shown once")},
    required=(*_TOKEN_FIELDS, "token"),
)
_NAME = {"name": TOKEN_NAME}
WHOAMI = obj(
    {
        "name": string(max_length=256, description="the token's name (oauth:<user> for OAuth)"),
        "is_admin": boolean(),
    },
    required=("name", "is_admin"),
)


def token_json(token: ApiToken) -> dict[str, object]:
    """The public view of a token record (never its digest)."""
    return {
        "name": token.name,
        "owner_email": token.owner_email,
        "is_admin": token.is_admin,
        "created_at": token.created_at,
        "last_used_at": token.last_used_at,
        "created_by": token.created_by,
    }


def _owner(token: ApiToken) -> str:
    """A token record is owned by the token itself."""
    return token.name


@define
class TokenResource:
    """The API token endpoints."""

    app: ClassVar[Klein] = Klein()
    api: ApiContext
    storage: IStorage
    clock: IReactorTime

    async def _visible_token(self, call: Call) -> ApiToken:
        """The token named in the path, if the caller may access it (else 404)."""
        name = call.params["name"]
        what = f"token {name!r}"
        require_access(call.principal, name, what)
        token: ApiToken | None = await self.storage.tokens.get(name)
        if token is None:
            raise NotFound(f"no {what}")
        return token

    @endpoint(
        app,
        "POST",
        "/tokens/",
        summary="Create an API token; its value is returned once",
        tags=("tokens",),
        auth="admin",
        body=TOKEN_CREATE,
        returns={201: TOKEN_ISSUED},
        errors=(409,),
    )
    async def create(self, call: Call) -> object:
        """Create a token for ``owner_email``; the response holds its value, shown only here."""
        name = call.body["name"]
        if name == ADMIN_TOKEN_NAME or await self.storage.tokens.get(name) is not None:
            raise Conflict(f"a token named {name!r} exists", field="/name")
        value = new_token_value()
        record = ApiToken(
            name=name,
            token_hash=hash_token(value),
            owner_email=call.body["owner_email"],
            created_at=self.clock.seconds(),
            created_by=call.principal.name,
        )
        await self.storage.tokens.create(record)
        return Reply(201, {**token_json(record), "token": value}, {"location": f"/tokens/{name}"})

    @endpoint(
        app,
        "GET",
        "/tokens/",
        summary="List API tokens (a non-admin token sees only itself)",
        tags=("tokens",),
        query=page_query({"owner_email": string(max_length=254)}),
        returns={200: page_schema(TOKEN)},
    )
    async def list(self, call: Call) -> object:
        """Tokens visible to the caller, by name, filtered by ``owner_email``."""
        tokens = visible(call.principal, await self.storage.tokens.list(), _owner)
        return paginate(tokens, call.query, token_json, filters=("owner_email",))

    @endpoint(
        app,
        "GET",
        "/whoami",
        summary="The calling token's name and whether it is the admin token",
        tags=("tokens",),
        returns={200: WHOAMI},
        operation_id="whoami",
    )
    async def whoami(self, call: Call) -> object:
        """Who the bearer token is (the web console asks at sign-in)."""
        return {"name": call.principal.name, "is_admin": call.principal.is_admin}

    @endpoint(
        app,
        "GET",
        "/tokens/{name}",
        summary="Show an API token",
        tags=("tokens",),
        params=_NAME,
        returns={200: TOKEN},
    )
    async def show(self, call: Call) -> object:
        """The token's record (never its value)."""
        return token_json(await self._visible_token(call))

    @endpoint(
        app,
        "DELETE",
        "/tokens/{name}",
        summary="Delete (revoke) an API token",
        tags=("tokens",),
        params=_NAME,
        returns={204: None},
    )
    async def delete(self, call: Call) -> object:
        """Revoke the token; the admin token cannot be deleted through the API."""
        token = await self._visible_token(call)
        if token.is_admin or token.name == ADMIN_TOKEN_NAME:
            raise Forbidden(
                "the admin token cannot be deleted through the API; "
                "replace it with 'oauthproxyctl token-admin'"
            )
        await self.storage.tokens.delete(token.name)
        return Reply(204)

    @endpoint(
        app,
        "POST",
        "/tokens/{name}/rotate",
        summary="Replace an API token's value; the new value is returned once",
        tags=("tokens",),
        params=_NAME,
        returns={200: TOKEN_ISSUED},
    )
    async def rotate(self, call: Call) -> object:
        """Issue a new value for the token; the old value stops working."""
        token = await self._visible_token(call)
        if token.is_admin:
            require_admin(call.principal, "rotate the admin token")
        value = new_token_value()
        rotated = evolve(token, token_hash=hash_token(value))
        await self.storage.tokens.update(rotated)
        return {**token_json(rotated), "token": value}
