"""``/oauth/keys``: the authorization server's signing keys, and their rotation (admin only).

``GET /oauth/keys`` lists the published keys with their state (``next``, ``active``,
``retiring``, ``retired``; ``published`` for a key from ``OAUTH_JWT_PRIVATE_KEY_B64``);
``POST /oauth/keys/rotate`` publishes a new key that signs ``activate_in`` seconds later
(by default the JWKS cache lifetime, so caches learn it first) and retires the others
once the tokens they signed have expired (:func:`oauthproxy.oauth.keys.rotate_signing_key`).
Private keys are never shown.  Mounted with the authorization server, whose storage
SecretBox seals the new key.
"""

from __future__ import annotations

from typing import ClassVar

from attrs import define
from klein import Klein
from twisted.internet.interfaces import IReactorTime

from oauthproxy.admin.endpoint import ApiContext, Call, Reply, endpoint
from oauthproxy.admin.listing import page_query, page_schema, paginate
from oauthproxy.admin.schema import Schema, boolean, integer, number, obj, string
from oauthproxy.interfaces import IOAuthStore, ISnapshotSource
from oauthproxy.model import OAuthSigningKey
from oauthproxy.oauth.keys import JWKS_MAX_AGE, active_record, key_state, rotate_signing_key
from oauthproxy.storage.crypto import SecretBox

TAGS = ("oauth",)
_TIME = number(minimum=0, description="POSIX seconds; 0 = not set")
_FIELDS: dict[str, Schema] = {
    "kid": string(max_length=200),
    "state": string(enum=("next", "active", "retiring", "retired", "published")),
    "configured": boolean(description="from OAUTH_JWT_PRIVATE_KEY_B64 (rotate it there)"),
    "created_at": _TIME,
    "activates_at": _TIME,
    "retires_at": _TIME,
}
SIGNING_KEY = obj(_FIELDS, required=tuple(_FIELDS))
ROTATE = obj(
    {
        "activate_in": integer(
            minimum=0,
            maximum=86400,
            description=f"seconds until the new key signs (default {JWKS_MAX_AGE})",
        )
    }
)


@define
class SigningKeyResource:
    """The ``/oauth/keys`` endpoints."""

    app: ClassVar[Klein] = Klein()
    api: ApiContext
    store: IOAuthStore
    snapshots: ISnapshotSource
    clock: IReactorTime
    box: SecretBox
    #: the longest a token lives (the access-token lifetime): old keys retire after it
    token_lifetime: float

    def key_json(self, record: OAuthSigningKey, active: OAuthSigningKey | None) -> object:
        """One key's public facts and state."""
        return {
            "kid": record.kid,
            "state": key_state(record, active, self.clock.seconds()),
            "configured": not record.sealed_private_key,
            "created_at": record.created_at,
            "activates_at": record.activates_at,
            "retires_at": record.retires_at,
        }

    @endpoint(app, "GET", "/oauth/keys", summary="List the OAuth signing keys", tags=TAGS,
              auth="admin", query=page_query(), returns={200: page_schema(SIGNING_KEY)},
              operation_id="oauth_keys_list")  # fmt: skip
    async def list_keys(self, call: Call) -> object:
        """Every published key, by creation, with its state."""
        records = sorted(await self.store.signing_keys.list(), key=lambda r: (r.created_at, r.kid))
        active = active_record(records, self.clock.seconds())
        return paginate(records, call.query, lambda r: self.key_json(r, active))

    @endpoint(app, "POST", "/oauth/keys/rotate",
              summary="Publish a new signing key; retire the old one after its tokens expire",
              tags=TAGS, auth="admin", body=ROTATE, returns={201: SIGNING_KEY}, errors=(409,),
              operation_id="oauth_keys_rotate")  # fmt: skip
    async def rotate(self, call: Call) -> object:
        """The new key (state ``next`` until it activates)."""
        body = call.body or {}
        now = self.clock.seconds()
        record = await rotate_signing_key(
            self.store,
            self.box,
            now=now,
            activate_in=float(body.get("activate_in", JWKS_MAX_AGE)),
            token_lifetime=self.token_lifetime,
        )
        stored = await self.store.signing_keys.list()
        return Reply(201, self.key_json(record, active_record(stored, now)))
