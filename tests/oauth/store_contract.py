"""The IOAuthStore contract, written once; ``test_store`` runs it on each backend."""

from __future__ import annotations

from typing import Any

from attrs import evolve
from twisted.internet.defer import Deferred
from twisted.trial.unittest import TestCase
from zope.interface.verify import verifyObject

from oauthproxy.errors import Conflict
from oauthproxy.interfaces import IOAuthStore, IStorage
from oauthproxy.model import OAuthAccessToken, OAuthRevocation
from oauthproxy.oauth.grants import issue_code, new_refresh_token
from oauthproxy.oauth.records import LoginSession, TokenFamily
from tests.oauth.samples import ALICE, authorization_request, public_client

NOW = 1_750_000_000.0


def family(family_id: str = "fam-1", client_id: str = "client-pub") -> TokenFamily:
    """A token family of Alice."""
    return TokenFamily(
        family_id=family_id,
        client_id=client_id,
        user=ALICE,
        scopes=("mcp:read",),
        audience=("https://mcp-a.example.test",),
        created_at=NOW,
    )


class OAuthStoreContract(TestCase):
    """What every IOAuthStore does; backends provide ``storage`` and ``sleep``."""

    storage: IStorage

    def sleep(self, seconds: float) -> Deferred[None]:
        """Let time pass for the store."""
        raise NotImplementedError

    @property
    def store(self) -> Any:
        """The store under test."""
        return self.storage.oauth

    def test_provides_the_interface(self) -> None:
        """The store provides IOAuthStore."""
        self.assertTrue(verifyObject(IOAuthStore, self.store))

    async def test_identical_public_registration_returns_the_first_client(self) -> None:
        """ATK-28: the same metadata key maps to the client stored first."""
        first = evolve(public_client(client_id="a"), metadata_key="k1")
        second = evolve(public_client(client_id="b"), metadata_key="k1")
        self.assertEqual(await self.store.register_client(first, 10), first)
        self.assertEqual((await self.store.register_client(second, 10)).client_id, "a")
        self.assertEqual([c.client_id for c in await self.store.list_clients()], ["a"])

    async def test_registration_stops_at_the_cap(self) -> None:
        """ATK-28: no client is stored once ``cap`` exist."""
        await self.store.register_client(public_client(client_id="a"), 1)
        self.assertIsNone(await self.store.register_client(public_client(client_id="b"), 1))

    async def test_touch_sets_last_use_and_delete_forgets(self) -> None:
        """A touched client shows its last use; a deleted one is gone (and reported)."""
        await self.store.put_client(public_client(client_id="a"))
        await self.store.touch_client("a", NOW)
        self.assertEqual((await self.store.get_client("a")).last_used_at, NOW)
        self.assertTrue(await self.store.delete_client("a"))
        self.assertFalse(await self.store.delete_client("a"))
        self.assertIsNone(await self.store.get_client("a"))

    async def test_code_redemption_is_single_use(self) -> None:
        """O21-6: the second redemption sees the first one's time."""
        _, code = issue_code(authorization_request(), ALICE, audience=(), now=NOW)
        await self.store.put_code(code)
        first = await self.store.redeem_code(code.code_hash, NOW + 1)
        second = await self.store.redeem_code(code.code_hash, NOW + 2)
        self.assertIsNone(first.used_at)
        self.assertEqual(second.used_at, NOW + 1)

    async def test_codes_expire(self) -> None:
        """O21-6: a code is gone after its lifetime."""
        _, code = issue_code(authorization_request(), ALICE, audience=(), now=NOW, lifetime=1)
        await self.store.put_code(code)
        await self.sleep(1.5)
        self.assertIsNone(await self.store.redeem_code(code.code_hash, NOW + 2))

    async def test_session_is_taken_once(self) -> None:
        """ATK-23: a login session can be taken once only."""
        session = LoginSession(
            state="st", request=authorization_request(), upstream_verifier="v" * 43,
            created_at=NOW, expires_at=NOW + 600,
        )  # fmt: skip
        await self.store.put_session(session)
        self.assertEqual(await self.store.take_session("st"), session)
        self.assertIsNone(await self.store.take_session("st"))

    async def test_revoking_a_family_drops_its_refresh_tokens(self) -> None:
        """BCP-4: a revoked family is marked and its refresh tokens are gone."""
        await self.store.put_family(family(), NOW + 100)
        _, refresh = new_refresh_token(family(), scopes=(), now=NOW, lifetime=100)
        _, other = new_refresh_token(family("fam-2"), scopes=(), now=NOW, lifetime=100)
        await self.store.put_refresh(refresh)
        await self.store.put_refresh(other)
        revoked = await self.store.revoke_family("fam-1", NOW + 5)
        self.assertEqual(revoked.revoked_at, NOW + 5)
        self.assertIsNone(await self.store.get_refresh(refresh.token_hash))
        self.assertEqual(await self.store.get_refresh(other.token_hash), other)

    async def test_a_revoked_family_stays_revoked_when_stored_again(self) -> None:
        """ATK-34: a grant storing the family it read earlier cannot undo a revocation."""
        await self.store.put_family(family(), NOW + 100)
        await self.store.revoke_family("fam-1", NOW + 5)
        stored = await self.store.put_family(family(), NOW + 200)
        self.assertEqual(stored.revoked_at, NOW + 5)
        self.assertEqual((await self.store.get_family("fam-1")).revoked_at, NOW + 5)

    async def test_a_family_revoked_before_it_is_stored_is_stored_revoked(self) -> None:
        """ATK-35: a code replay may revoke the family its first redemption is storing."""
        self.assertIsNone(await self.store.revoke_family("fam-1", NOW + 5))
        stored = await self.store.put_family(family(), NOW + 100)
        self.assertIsNotNone(stored.revoked_at)
        self.assertIsNotNone((await self.store.get_family("fam-1")).revoked_at)
        other = await self.store.put_family(family("fam-2"), NOW + 100)
        self.assertIsNone(other.revoked_at)

    async def test_refresh_rotation_is_compare_and_set(self) -> None:
        """ATK-34: of two rotations of one token, only the first is stored."""
        _, record = new_refresh_token(family(), scopes=(), now=NOW, lifetime=100)
        await self.store.put_refresh(record)
        first = evolve(record, rotated_at=NOW + 1, replaced_by="a")
        second = evolve(record, rotated_at=NOW + 1, replaced_by="b")
        self.assertEqual(await self.store.replace_refresh(record, first), first)
        self.assertEqual(await self.store.replace_refresh(record, second), first)
        self.assertEqual(await self.store.get_refresh(record.token_hash), first)
        await self.store.revoke_family("fam-1", NOW + 2)
        self.assertIsNone(await self.store.replace_refresh(first, second))

    async def test_reap_drops_expired_records(self) -> None:
        """Expired families, refresh tokens and access-token records are reaped."""
        await self.store.put_family(family(), NOW + 10)
        token = OAuthAccessToken(jti="j", family_id="fam-1", client_id="c", username="a",
                                 expires_at=NOW + 20)  # fmt: skip
        await self.store.put_access_token(token)
        self.assertEqual(await self.store.reap(NOW + 15), 1)
        self.assertEqual(await self.store.list_families(), [])
        self.assertEqual(await self.store.list_access_tokens(), [token])

    async def test_revocations_publish_events(self) -> None:
        """MCP-17: a revocation is a record with an event, so mirrors learn of it."""
        before = await self.storage.events.last_id()
        await self.store.revocations.create(OAuthRevocation(jti="j1", expires_at=NOW))
        events = await self.storage.events.read(before, 0)
        self.assertEqual([(e.kind, e.key) for e in events], [("oauth_revocation", "j1")])
        with self.assertRaises(Conflict):
            await self.store.revocations.create(OAuthRevocation(jti="j1", expires_at=NOW))
