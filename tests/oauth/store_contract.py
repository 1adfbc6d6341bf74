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
from oauthproxy.oauth.records import InitialAccessToken, LoginSession, TokenFamily
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

    async def test_full_registry_evicts_the_oldest_unused_client(self) -> None:
        """ATK-37, ATK-28: at the cap, the oldest never-used client makes room."""
        for n, name in enumerate(("a", "b", "c")):
            client = evolve(public_client(client_id=name), client_id_issued_at=NOW + n)
            await self.store.register_client(evolve(client, metadata_key=f"k-{name}"), 3)
        await self.store.touch_client("a", NOW + 5)
        newest = evolve(public_client(client_id="d"), client_id_issued_at=NOW + 6)
        self.assertEqual(await self.store.register_client(newest, 3), newest)
        self.assertEqual([c.client_id for c in await self.store.list_clients()], ["a", "c", "d"])
        # the evicted client's metadata key is free again
        again = evolve(public_client(client_id="e"), metadata_key="k-b", client_id_issued_at=NOW)
        self.assertEqual((await self.store.register_client(again, 4)).client_id, "e")

    async def test_registration_stops_when_every_client_was_used(self) -> None:
        """ATK-28: with only used clients at the cap, nothing is evicted and None returned."""
        await self.store.register_client(public_client(client_id="a"), 1)
        await self.store.touch_client("a", NOW)
        self.assertIsNone(await self.store.register_client(public_client(client_id="b"), 1))
        self.assertEqual([c.client_id for c in await self.store.list_clients()], ["a"])

    async def test_initial_tokens_count_their_uses(self) -> None:
        """ATK-37, RFC 7591 §3: a token allows max_uses registrations, then none."""
        token = InitialAccessToken(name="ci", token_hash="h1", created_at=NOW, max_uses=2)
        self.assertTrue(await self.store.put_initial_token(token))
        self.assertFalse(await self.store.put_initial_token(evolve(token, token_hash="h2")))
        self.assertEqual((await self.store.use_initial_token("h1", NOW)).uses, 1)
        self.assertEqual((await self.store.use_initial_token("h1", NOW)).uses, 2)
        self.assertIsNone(await self.store.use_initial_token("h1", NOW))
        self.assertIsNone(await self.store.use_initial_token("h2", NOW))
        self.assertEqual(await self.store.list_initial_tokens(), [evolve(token, uses=2)])
        self.assertTrue(await self.store.delete_initial_token("ci"))
        self.assertFalse(await self.store.delete_initial_token("ci"))
        self.assertEqual(await self.store.list_initial_tokens(), [])

    async def test_expired_initial_token_is_refused(self) -> None:
        """ATK-37: an initial access token past its expiry registers nothing."""
        token = InitialAccessToken(name="t", token_hash="h", created_at=NOW, expires_at=NOW + 10)
        await self.store.put_initial_token(token)
        self.assertIsNotNone(await self.store.use_initial_token("h", NOW + 9))
        self.assertIsNone(await self.store.use_initial_token("h", NOW + 10))

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
