"""The in-memory twin of :class:`~oauthproxy.interfaces.IOAuthStore`."""

from __future__ import annotations

from typing import TypeVar

from attrs import evolve
from twisted.internet.defer import Deferred
from zope.interface import implementer

from oauthproxy.interfaces import (
    IOAuthStore,
)
from oauthproxy.model import (
    OAuthAccessToken,
    OAuthRevocation,
    OAuthSigningKey,
)
from oauthproxy.oauth.records import (
    FAMILY_TOMBSTONE_LIFETIME,
    AuthorizationCode,
    InitialAccessToken,
    LoginSession,
    OAuthClient,
    RefreshTokenRecord,
    TokenFamily,
)
from oauthproxy.storage.codec import decode, encode
from oauthproxy.storage.visibility import WriteVisibility
from oauthproxy.testing.memory import MemoryRecordStore, MemoryState

T = TypeVar("T")


@implementer(IOAuthStore)
class MemoryOAuthStore:
    """:class:`~oauthproxy.interfaces.IOAuthStore` in memory, like the Redis one.

    Codes and login sessions expire on the state's clock; families, refresh tokens and
    access-token records stay until :meth:`reap` drops the expired ones, as on Redis.
    """

    def __init__(self, state: MemoryState, visibility: WriteVisibility | None = None) -> None:
        """Empty OAuth state sharing ``state`` (clock, availability, events).

        ``visibility`` is the instance's (:class:`~oauthproxy.testing.MemoryStorage`'s).
        """
        self.state = state
        visibility = visibility or WriteVisibility()
        self.revocations: MemoryRecordStore[OAuthRevocation] = MemoryRecordStore(
            state, "oauth_revocation", OAuthRevocation, visibility
        )
        self.signing_keys: MemoryRecordStore[OAuthSigningKey] = MemoryRecordStore(
            state, "oauth_signing_key", OAuthSigningKey, visibility
        )
        self.clients: dict[str, str] = {}
        self.client_keys: dict[str, str] = {}
        self.client_used: dict[str, float] = {}
        #: client_id -> registration time of registered clients never used
        self.clients_unused: dict[str, float] = {}
        #: name -> InitialAccessToken JSON (uses 0); uses by name
        self.initial_tokens: dict[str, str] = {}
        self.initial_token_uses: dict[str, int] = {}
        #: code hash -> (JSON, expiry), (time of first use, expiry)
        self.codes: dict[str, tuple[str, float]] = {}
        self.codes_used: dict[str, tuple[float, float]] = {}
        self.sessions: dict[str, tuple[str, float]] = {}
        #: family_id -> (True, expiry): revoked before it was stored
        self.revoked_families: dict[str, tuple[bool, float]] = {}
        #: collection -> key -> (JSON, expiry)
        self.expiring: dict[str, dict[str, tuple[str, float]]] = {
            "families": {},
            "refresh": {},
            "access": {},
        }

    def _client(self, text: str) -> OAuthClient:
        """A client with its last use merged in."""
        client = decode(OAuthClient, text)
        used = self.client_used.get(client.client_id)
        if used is None or (client.last_used_at is not None and client.last_used_at >= used):
            return client
        return evolve(client, last_used_at=used)

    def get_client(self, client_id: str) -> Deferred[OAuthClient | None]:
        """The client, or None."""
        return self.state.run(
            lambda: None if client_id not in self.clients else self._client(self.clients[client_id])
        )

    def list_clients(self) -> Deferred[list[OAuthClient]]:
        """Every client, sorted by client_id."""
        return self.state.run(
            lambda: sorted(
                (self._client(t) for t in self.clients.values()), key=lambda c: c.client_id
            )
        )

    def register_client(self, client: OAuthClient, cap: int) -> Deferred[OAuthClient | None]:
        """Store a new client unless an identical one exists or the cap is reached."""

        def register() -> OAuthClient | None:
            holder = self.client_keys.get(client.metadata_key) if client.metadata_key else None
            if holder is not None and holder in self.clients:
                return decode(OAuthClient, self.clients[holder])
            while len(self.clients) >= cap:
                if not self.clients_unused:
                    return None
                oldest = min(self.clients_unused, key=lambda c: (self.clients_unused[c], c))
                self._forget(oldest)
            self.clients[client.client_id] = encode(client)
            self.clients_unused[client.client_id] = client.client_id_issued_at
            if client.metadata_key:
                self.client_keys[client.metadata_key] = client.client_id
            return client

        return self.state.run(register)

    def put_client(self, client: OAuthClient) -> Deferred[None]:
        """Store or replace a client."""

        def put() -> None:
            self.clients[client.client_id] = encode(client)

        return self.state.run(put)

    def delete_client(self, client_id: str) -> Deferred[bool]:
        """Remove a client; whether it existed."""
        return self.state.run(lambda: self._forget(client_id))

    def _forget(self, client_id: str) -> bool:
        """Remove a client and its index entries; whether it existed."""
        text = self.clients.pop(client_id, None)
        self.clients_unused.pop(client_id, None)
        if text is None:
            return False
        self.client_used.pop(client_id, None)
        key = decode(OAuthClient, text).metadata_key
        if key and self.client_keys.get(key) == client_id:
            del self.client_keys[key]
        return True

    def touch_client(self, client_id: str, when: float) -> Deferred[None]:
        """Record a use of the client."""

        def touch() -> None:
            self.client_used[client_id] = when
            self.clients_unused.pop(client_id, None)

        return self.state.run(touch)

    def put_initial_token(self, token: InitialAccessToken) -> Deferred[bool]:
        """Store a new initial access token; False when the name is taken."""

        def put() -> bool:
            if token.name in self.initial_tokens:
                return False
            self.initial_tokens[token.name] = encode(evolve(token, uses=0))
            return True

        return self.state.run(put)

    def _initial_token(self, text: str) -> InitialAccessToken:
        """A stored token with its uses."""
        token = decode(InitialAccessToken, text)
        return evolve(token, uses=self.initial_token_uses.get(token.name, 0))

    def list_initial_tokens(self) -> Deferred[list[InitialAccessToken]]:
        """Every initial access token with its uses, by name."""
        return self.state.run(
            lambda: [
                self._initial_token(self.initial_tokens[n]) for n in sorted(self.initial_tokens)
            ]
        )

    def delete_initial_token(self, name: str) -> Deferred[bool]:
        """Forget an initial access token; whether it existed."""

        def delete() -> bool:
            self.initial_token_uses.pop(name, None)
            return self.initial_tokens.pop(name, None) is not None

        return self.state.run(delete)

    def use_initial_token(self, token_hash: str, now: float) -> Deferred[InitialAccessToken | None]:
        """Count one registration with a usable token; the token, or None."""

        def use() -> InitialAccessToken | None:
            for text in self.initial_tokens.values():
                token = self._initial_token(text)
                if token.token_hash == token_hash and token.usable(now):
                    self.initial_token_uses[token.name] = token.uses + 1
                    return evolve(token, uses=token.uses + 1)
            return None

        return self.state.run(use)

    def put_code(self, code: AuthorizationCode) -> Deferred[None]:
        """Store a code until it expires."""
        expires = self.state.clock.seconds() + (code.expires_at - code.issued_at)

        def put() -> None:
            self.codes[code.code_hash] = (encode(code), expires)

        return self.state.run(put)

    def redeem_code(self, code_hash: str, now: float) -> Deferred[AuthorizationCode | None]:
        """Mark the code used; the record carries ``used_at`` of an earlier redemption."""

        def redeem() -> AuthorizationCode | None:
            text = self.state.live(self.codes, code_hash)
            if text is None:
                return None
            record = decode(AuthorizationCode, text)
            used = self.state.live(self.codes_used, code_hash)
            if used is not None:
                return evolve(record, used_at=used)
            self.codes_used[code_hash] = (now, self.codes[code_hash][1])
            return record

        return self.state.run(redeem)

    def put_session(self, session: LoginSession) -> Deferred[None]:
        """Store a login session until it expires."""
        expires = self.state.clock.seconds() + (session.expires_at - session.created_at)

        def put() -> None:
            self.sessions[session.state] = (encode(session), expires)

        return self.state.run(put)

    def take_session(self, state: str) -> Deferred[LoginSession | None]:
        """The session for ``state``, removed at once."""

        def take() -> LoginSession | None:
            text = self.state.live(self.sessions, state)
            self.sessions.pop(state, None)
            return None if text is None else decode(LoginSession, text)

        return self.state.run(take)

    def _put(self, collection: str, key: str, record: object, expires_at: float) -> Deferred[None]:
        """Store ``record`` in ``collection`` until ``expires_at``."""

        def put() -> None:
            self.expiring[collection][key] = (encode(record), expires_at)

        return self.state.run(put)

    def _get(self, collection: str, key: str, cls: type[T]) -> Deferred[T | None]:
        """The record under ``key`` not yet reaped, or None."""

        def get() -> T | None:
            entry = self.expiring[collection].get(key)
            return None if entry is None else decode(cls, entry[0])

        return self.state.run(get)

    def _list(self, collection: str, cls: type[T]) -> list[T]:
        """Every record of ``collection`` not yet reaped."""
        return [decode(cls, text) for text, _ in self.expiring[collection].values()]

    def put_family(self, family: TokenFamily, expires_at: float) -> Deferred[TokenFamily]:
        """Store or replace a family until ``expires_at``; a revoked one stays revoked."""

        def put() -> TokenFamily:
            families = self.expiring["families"]
            entry = families.get(family.family_id)
            current = None if entry is None else decode(TokenFamily, entry[0])
            stored = family
            if current is not None and current.revoked_at is not None:
                stored = current
            elif self.state.live(self.revoked_families, family.family_id):
                stored = evolve(family, revoked_at=family.created_at)
            families[family.family_id] = (encode(stored), expires_at)
            return stored

        return self.state.run(put)

    def get_family(self, family_id: str) -> Deferred[TokenFamily | None]:
        """The family, or None."""
        return self._get("families", family_id, TokenFamily)

    def list_families(self) -> Deferred[list[TokenFamily]]:
        """Every stored family, oldest first."""
        return self.state.run(
            lambda: sorted(
                self._list("families", TokenFamily), key=lambda f: (f.created_at, f.family_id)
            )
        )

    def put_refresh(self, record: RefreshTokenRecord) -> Deferred[None]:
        """Store or replace a refresh token record until it expires."""
        return self._put("refresh", record.token_hash, record, record.expires_at)

    def get_refresh(self, token_hash: str) -> Deferred[RefreshTokenRecord | None]:
        """The record, or None."""
        return self._get("refresh", token_hash, RefreshTokenRecord)

    def replace_refresh(
        self, expected: RefreshTokenRecord, replacement: RefreshTokenRecord
    ) -> Deferred[RefreshTokenRecord | None]:
        """Store ``replacement`` if ``expected`` is stored; the record stored afterwards."""

        def replace() -> RefreshTokenRecord | None:
            refresh = self.expiring["refresh"]
            entry = refresh.get(expected.token_hash)
            if entry is None:
                return None
            if entry[0] == encode(expected):
                refresh[expected.token_hash] = (encode(replacement), entry[1])
                return replacement
            return decode(RefreshTokenRecord, entry[0])

        return self.state.run(replace)

    def revoke_family(self, family_id: str, now: float) -> Deferred[TokenFamily | None]:
        """Mark the family revoked and drop its refresh tokens."""

        def revoke() -> TokenFamily | None:
            refresh = self.expiring["refresh"]
            for key, (text, _) in list(refresh.items()):
                if decode(RefreshTokenRecord, text).family_id == family_id:
                    del refresh[key]
            entry = self.expiring["families"].get(family_id)
            if entry is None:
                expires = self.state.clock.seconds() + FAMILY_TOMBSTONE_LIFETIME
                self.revoked_families[family_id] = (True, expires)
                return None
            family = decode(TokenFamily, entry[0])
            if family.revoked_at is None:
                family = evolve(family, revoked_at=now)
                self.expiring["families"][family_id] = (encode(family), entry[1])
            return family

        return self.state.run(revoke)

    def put_access_token(self, record: OAuthAccessToken) -> Deferred[None]:
        """Remember an issued access token until it expires."""
        return self._put("access", record.jti, record, record.expires_at)

    def list_access_tokens(self) -> Deferred[list[OAuthAccessToken]]:
        """Every issued access token record not yet reaped, oldest first."""
        return self.state.run(
            lambda: sorted(
                self._list("access", OAuthAccessToken), key=lambda r: (r.issued_at, r.jti)
            )
        )

    def reap(self, now: float) -> Deferred[int]:
        """Drop expired families, refresh tokens and access-token records."""

        def reap() -> int:
            total = 0
            for entries in self.expiring.values():
                for key, (_, expires_at) in list(entries.items()):
                    if expires_at <= now:
                        del entries[key]
                        total += 1
            return total

        return self.state.run(reap)
