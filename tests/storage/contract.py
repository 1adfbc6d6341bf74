"""Contract tests for the store interfaces, written once, run on every implementation.

Each ``*Contract`` mixin tests one interface of :mod:`oauthproxy.interfaces`
through ``self.storage`` (an :class:`~oauthproxy.interfaces.IStorage`).  A
concrete test case mixes it with a backend mixin that provides ``storage`` in
``setUp`` and :meth:`StorageBackend.sleep`, which lets time pass (a
``task.Clock`` for the memory twin, the real reactor for Redis).
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from attrs import evolve
from twisted.internet.defer import Deferred
from twisted.trial.unittest import TestCase
from zope.interface.verify import verifyObject

from oauthproxy.errors import Conflict, NotFound, StorageUnavailable
from oauthproxy.interfaces import (
    IAccountKeyStore,
    IAuthRuleStore,
    ICertificateStore,
    IChallengeStore,
    IDockerServiceStore,
    IEventLog,
    ILocks,
    IProxyStore,
    IRouteStore,
    IServiceStore,
    IStorage,
    ITokenStore,
)
from oauthproxy.model import (
    ApiToken,
    AuthRule,
    Certificate,
    DockerService,
    Event,
    ExternalService,
    Proxy,
    ProxyAuth,
    Route,
    RouteAuth,
    ServicePort,
    VolumeMount,
)
from oauthproxy.storage.codec import Record, decode_record, encode, record_key
from oauthproxy.storage.events import EventsTrimmed

R = TypeVar("R", bound=Record)


class StorageBackend(TestCase):
    """What every contract needs from a backend."""

    storage: IStorage

    def sleep(self, seconds: float) -> Deferred[None]:
        """Let ``seconds`` pass for the store (expiry, blocking reads)."""
        raise NotImplementedError

    def storage_keeping(self, stream_maxlen: int) -> IStorage:
        """Another storage on the same backend whose stream keeps about ``stream_maxlen`` events."""
        raise NotImplementedError

    async def events_since(self, after: str) -> list[Event]:
        """Every event after ``after`` (no waiting)."""
        events: list[Event] = await self.storage.events.read(after, 0)
        return events


class _RecordStoreContract(StorageBackend, Generic[R]):
    """Behaviour shared by the five record stores; subclasses say which and how."""

    kind = ""
    key_field = ""

    def store(self) -> Any:
        """The store under test."""
        raise NotImplementedError

    def make(self, key: str, variant: int = 0) -> R:
        """A record under ``key``; different ``variant`` values differ in content."""
        raise NotImplementedError

    async def test_create_then_get_returns_equal_record(self) -> None:
        """A created record reads back equal, through the codec."""
        record = self.make("a1")
        await self.store().create(record)
        self.assertEqual(await self.store().get(record_key(record)), record)

    async def test_get_missing_returns_none(self) -> None:
        """Reading an unknown key gives None, not an error."""
        self.assertIsNone(await self.store().get("missing"))

    async def test_create_existing_raises_conflict(self) -> None:
        """Creating a key twice raises Conflict naming the key field; the first stays."""
        first = self.make("a1")
        await self.store().create(first)
        with self.assertRaises(Conflict) as raised:
            await self.store().create(self.make("a1", variant=1))
        self.assertEqual(raised.exception.field, self.key_field)
        self.assertEqual(await self.store().get("a1"), first)

    async def test_update_replaces_record(self) -> None:
        """An update replaces the whole record."""
        await self.store().create(self.make("a1"))
        changed = self.make("a1", variant=1)
        await self.store().update(changed)
        self.assertEqual(await self.store().get("a1"), changed)

    async def test_update_missing_raises_not_found(self) -> None:
        """Updating an unknown key raises NotFound and creates nothing."""
        with self.assertRaises(NotFound):
            await self.store().update(self.make("a1"))
        self.assertIsNone(await self.store().get("a1"))

    async def test_delete_removes_record(self) -> None:
        """A deleted record is gone from get and list."""
        await self.store().create(self.make("a1"))
        await self.store().delete("a1")
        self.assertIsNone(await self.store().get("a1"))
        self.assertEqual(await self.store().list(), [])

    async def test_delete_missing_raises_not_found(self) -> None:
        """Deleting an unknown key raises NotFound."""
        with self.assertRaises(NotFound):
            await self.store().delete("a1")

    async def test_list_is_sorted_by_key(self) -> None:
        """list() returns every record, sorted by key."""
        for key in ("c3", "a1", "b2"):
            await self.store().create(self.make(key))
        self.assertEqual([record_key(r) for r in await self.store().list()], ["a1", "b2", "c3"])

    async def test_writes_publish_events_carrying_the_record(self) -> None:
        """create/update/delete each publish one event with the record JSON after it."""
        start = await self.storage.events.last_id()
        await self.store().create(self.make("a1"))
        await self.store().update(self.make("a1", variant=1))
        await self.store().delete("a1")
        events = await self.events_since(start)
        self.assertEqual(
            [(e.type, e.kind, e.key) for e in events],
            [
                (f"{self.kind}_created", self.kind, "a1"),
                (f"{self.kind}_updated", self.kind, "a1"),
                (f"{self.kind}_deleted", self.kind, "a1"),
            ],
        )
        assert events[1].record is not None
        self.assertEqual(decode_record(self.kind, events[1].record), self.make("a1", variant=1))
        self.assertIsNone(events[2].record)

    async def test_failed_writes_publish_nothing(self) -> None:
        """Conflict and NotFound leave the event stream untouched."""
        await self.store().create(self.make("a1"))
        start = await self.storage.events.last_id()
        for attempt in (
            self.store().create(self.make("a1")),
            self.store().update(self.make("zz")),
            self.store().delete("zz"),
        ):
            with self.assertRaises((Conflict, NotFound)):
                await attempt
        self.assertEqual(await self.events_since(start), [])


class ProxyStoreContract(_RecordStoreContract[Proxy]):
    """IProxyStore."""

    kind = "proxy"
    key_field = "hostname"

    def store(self) -> Any:
        """The proxy store."""
        return self.storage.proxies

    def make(self, key: str, variant: int = 0) -> Proxy:
        """A proxy with nested auth and headers, so the codec is exercised."""
        return Proxy(
            hostname=key,
            target_url=f"http://backend-{variant}:8080",
            custom_request_headers=(("X-A", "1"), ("X-A", str(variant))),
            enabled_routes=("r1", "r2"),
            auth=ProxyAuth(required_users=("alice",), auth_proxy="auth.example"),
            read_timeout=60.5 + variant,
        )

    async def test_hostnames_are_case_insensitive(self) -> None:
        """A proxy created as ``A1`` is found, conflicts and is deleted as ``a1``."""
        await self.store().create(self.make("A1"))
        self.assertIsNotNone(await self.store().get("a1"))
        with self.assertRaises(Conflict):
            await self.store().create(self.make("a1"))
        await self.store().delete("A1")
        self.assertIsNone(await self.store().get("a1"))


class RouteStoreContract(_RecordStoreContract[Route]):
    """IRouteStore."""

    kind = "route"
    key_field = "route_id"

    def store(self) -> Any:
        """The route store."""
        return self.storage.routes

    def make(self, key: str, variant: int = 0) -> Route:
        """A route with auth and a method filter."""
        return Route(
            route_id=key,
            path_pattern=f"/api/{variant}",
            target_type="service",
            target_value="svc",
            methods=("GET", "POST"),
            priority=50 + variant,
            auth=RouteAuth(oauth_scopes=("read",)),
        )


class ServiceStoreContract(_RecordStoreContract[ExternalService]):
    """IServiceStore."""

    kind = "service"
    key_field = "name"

    def store(self) -> Any:
        """The service store."""
        return self.storage.services

    def make(self, key: str, variant: int = 0) -> ExternalService:
        """An external service."""
        return ExternalService(name=key, target_url=f"http://svc-{variant}", description="d")


def _web(name: str, *ports: ServicePort, previous: DockerService | None = None) -> DockerService:
    """A Docker service holding ``ports`` (during an update, also ``previous``'s)."""
    return DockerService(
        name=name,
        image="local/busybox:1",
        ports=ports,
        previous=None if previous is None else encode(previous),
    )


class DockerServiceStoreContract(_RecordStoreContract[DockerService]):
    """IDockerServiceStore: records, and their host ports reserved with every write."""

    kind = "docker_service"
    key_field = "name"

    def store(self) -> Any:
        """The Docker service store."""
        return self.storage.docker_services

    def make(self, key: str, variant: int = 0) -> DockerService:
        """A service with nested ports, mounts and a port token digest."""
        return DockerService(
            name=key,
            image="local/busybox:1",
            command=("httpd", "-f", "-p", str(8000 + variant)),
            environment=(("A", str(variant)),),
            volumes=(VolumeMount("data", "/data"),),
            ports=(
                ServicePort("http", 20000 + variant, 80, token_hash="ab" * 32),
                ServicePort("dns", 20053, 53, "0.0.0.0", "udp", allowed_networks=("10.0.0.0/8",)),
            )
            if key == "a1"
            else (),
        )

    async def reserved(self) -> set[tuple[str, int, str, str]]:
        """Every reservation as (protocol, port, bind, holder)."""
        return {(r.protocol, r.port, r.bind, r.holder) for r in await self.store().reservations()}

    async def test_a_write_reserves_the_ports_of_the_record(self) -> None:
        """Creating a service reserves its ports; updating moves them; deleting frees them."""
        await self.store().create(_web("web", ServicePort("http", 14000, 80)))
        self.assertEqual(await self.reserved(), {("tcp", 14000, "127.0.0.1", "web/http")})
        await self.store().update(_web("web", ServicePort("http", 14001, 80)))
        self.assertEqual(await self.reserved(), {("tcp", 14001, "127.0.0.1", "web/http")})
        await self.store().delete("web")
        self.assertEqual(await self.reserved(), set())

    async def test_a_port_another_service_holds_refuses_the_write(self) -> None:
        """Conflict naming the port and its holder (field ``ports``); nothing is written."""
        await self.store().create(_web("one", ServicePort("http", 14000, 80, "0.0.0.0")))
        start = await self.storage.events.last_id()
        with self.assertRaises(Conflict) as raised:
            await self.store().create(_web("two", ServicePort("web", 14000, 80)))
        self.assertEqual(raised.exception.field, "ports")
        self.assertIn("14000", raised.exception.detail)
        self.assertIn("one/http", raised.exception.detail)
        self.assertIsNone(await self.store().get("two"))
        self.assertEqual(await self.events_since(start), [])
        self.assertEqual(await self.reserved(), {("tcp", 14000, "0.0.0.0", "one/http")})

    async def test_an_update_that_clashes_keeps_the_old_reservations(self) -> None:
        """A refused update leaves the record and its ports as they were."""
        await self.store().create(_web("one", ServicePort("http", 14000, 80)))
        await self.store().create(_web("two", ServicePort("http", 14001, 80)))
        with self.assertRaises(Conflict):
            await self.store().update(_web("two", ServicePort("http", 14000, 80)))
        self.assertIn(("tcp", 14001, "127.0.0.1", "two/http"), await self.reserved())
        self.assertEqual((await self.store().get("two")).ports[0].host, 14001)

    async def test_addresses_that_do_not_overlap_share_a_port(self) -> None:
        """127.0.0.1:14000 and 127.0.0.2:14000 are two ports; TCP and UDP too."""
        await self.store().create(_web("one", ServicePort("http", 14000, 80)))
        await self.store().create(_web("two", ServicePort("http", 14000, 80, "127.0.0.2")))
        await self.store().create(_web("three", ServicePort("dns", 14000, 53, "0.0.0.0", "udp")))
        self.assertEqual(len(await self.reserved()), 3)

    async def test_an_update_in_flight_holds_old_and_new_ports(self) -> None:
        """While ``previous`` is set, the previous record's ports stay reserved for a rollback."""
        old = _web("web", ServicePort("http", 14000, 80))
        await self.store().create(old)
        await self.store().update(_web("web", ServicePort("http", 14001, 80), previous=old))
        self.assertEqual({port for _, port, _, _ in await self.reserved()}, {14000, 14001})
        with self.assertRaises(Conflict):
            await self.store().create(_web("other", ServicePort("http", 14000, 80)))
        await self.store().update(_web("web", ServicePort("http", 14001, 80)))
        self.assertEqual({port for _, port, _, _ in await self.reserved()}, {14001})

    async def test_racing_creates_for_one_port_have_one_winner(self) -> None:
        """Of many services wanting one port at once, exactly one holds it."""
        attempts = [
            self.store().create(_web(f"s{i}", ServicePort("http", 14000, 80))) for i in range(8)
        ]
        won = lost = 0
        for attempt in attempts:
            try:
                await attempt
                won += 1
            except Conflict:
                lost += 1
        self.assertEqual((won, lost), (1, 7))
        self.assertEqual(len(await self.reserved()), 1)

    async def test_the_deployment_id_is_made_once(self) -> None:
        """Every caller gets the same deployment id."""
        first = await self.store().deployment()
        self.assertTrue(first)
        self.assertEqual(await self.store().deployment(), first)


class AuthRuleStoreContract(_RecordStoreContract[AuthRule]):
    """IAuthRuleStore."""

    kind = "auth_rule"
    key_field = "config_id"

    def store(self) -> Any:
        """The auth rule store."""
        return self.storage.auth_rules

    def make(self, key: str, variant: int = 0) -> AuthRule:
        """An endpoint rule with methods and scopes."""
        return AuthRule(
            config_id=key,
            path_pattern=f"/proxies/*{variant}",
            methods=("GET", "PUT"),
            auth_type="oauth",
            oauth_scopes=("admin",),
            priority=60 + variant,
        )


class CertificateStoreContract(_RecordStoreContract[Certificate]):
    """ICertificateStore."""

    kind = "certificate"
    key_field = "cert_name"

    def store(self) -> Any:
        """The certificate store."""
        return self.storage.certificates

    def make(self, key: str, variant: int = 0) -> Certificate:
        """A pending certificate with a private key."""
        return Certificate(
            cert_name=key,
            domains=("a.example", f"b{variant}.example"),
            private_key_pem=f"-----BEGIN PRIVATE KEY-----\n{variant}\n-----END PRIVATE KEY-----\n",
        )

    async def test_private_key_reads_back_in_plaintext(self) -> None:
        """get, list and events all hand out the private key as it was stored."""
        start = await self.storage.events.last_id()
        record = self.make("c1")
        await self.store().create(record)
        self.assertEqual((await self.store().get("c1")).private_key_pem, record.private_key_pem)
        self.assertEqual((await self.store().list())[0].private_key_pem, record.private_key_pem)
        [event] = await self.events_since(start)
        assert event.record is not None
        self.assertEqual(decode_record("certificate", event.record), record)

    async def test_update_to_ready_publishes_certificate_ready(self) -> None:
        """An update that makes a certificate ready is published as certificate_ready."""
        await self.store().create(self.make("c1"))
        start = await self.storage.events.last_id()
        ready = evolve(self.make("c1"), status="ready", fullchain_pem="CHAIN-1")
        await self.store().update(ready)
        await self.store().update(evolve(ready, failures=0, updated_at=5.0))
        await self.store().update(evolve(ready, fullchain_pem="CHAIN-2"))
        self.assertEqual(
            [e.type for e in await self.events_since(start)],
            ["certificate_ready", "certificate_updated", "certificate_ready"],
        )


class TokenStoreContract(_RecordStoreContract[ApiToken]):
    """ITokenStore."""

    kind = "token"
    key_field = "name"

    def store(self) -> Any:
        """The token store."""
        return self.storage.tokens

    def make(self, key: str, variant: int = 0) -> ApiToken:
        """A token whose digest depends on its name and variant."""
        return ApiToken(name=key, token_hash=f"{key}-{variant}".ljust(64, "0"), owner_email="o@x")

    async def test_find_by_hash(self) -> None:
        """A token is found by its digest; an unknown digest finds nothing."""
        token = self.make("t1")
        await self.store().create(token)
        self.assertEqual(await self.store().find_by_hash(token.token_hash), token)
        self.assertIsNone(await self.store().find_by_hash("f" * 64))

    async def test_same_digest_under_another_name_conflicts(self) -> None:
        """Two tokens may not share a value; the second is not stored."""
        token = self.make("t1")
        await self.store().create(token)
        with self.assertRaises(Conflict):
            await self.store().create(evolve(token, name="t2"))
        self.assertIsNone(await self.store().get("t2"))
        self.assertEqual((await self.store().find_by_hash(token.token_hash)).name, "t1")

    async def test_rotation_moves_the_digest(self) -> None:
        """After an update with a new digest only the new value finds the token."""
        old = self.make("t1")
        await self.store().create(old)
        new = self.make("t1", variant=1)
        await self.store().update(new)
        self.assertIsNone(await self.store().find_by_hash(old.token_hash))
        self.assertEqual(await self.store().find_by_hash(new.token_hash), new)

    async def test_deleted_token_is_not_found_by_digest(self) -> None:
        """Deleting a token frees its digest."""
        token = self.make("t1")
        await self.store().create(token)
        await self.store().delete("t1")
        self.assertIsNone(await self.store().find_by_hash(token.token_hash))
        await self.store().create(evolve(token, name="t2"))

    async def test_touch_records_use_without_event(self) -> None:
        """touch sets last_used_at (seen by get, list, find) and publishes nothing."""
        token = self.make("t1")
        await self.store().create(token)
        start = await self.storage.events.last_id()
        await self.store().touch("t1", 1234.5)
        self.assertEqual((await self.store().get("t1")).last_used_at, 1234.5)
        self.assertEqual((await self.store().list())[0].last_used_at, 1234.5)
        self.assertEqual((await self.store().find_by_hash(token.token_hash)).last_used_at, 1234.5)
        self.assertEqual(await self.events_since(start), [])

    async def test_touch_unknown_token_does_nothing(self) -> None:
        """Touching a token that was deleted meanwhile neither fails nor recreates it."""
        await self.store().touch("ghost", 1.0)
        self.assertIsNone(await self.store().get("ghost"))


class EventLogContract(StorageBackend):
    """IEventLog."""

    async def test_last_id_of_empty_stream(self) -> None:
        """With no events, last_id is ``0-0`` and reading from it finds nothing."""
        self.assertEqual(await self.storage.events.last_id(), "0-0")
        self.assertEqual(await self.storage.events.read("0-0", 0), [])

    async def test_last_id_is_the_newest_event(self) -> None:
        """last_id names the most recent event, and reading after it finds nothing."""
        await self.storage.services.create(ExternalService("s1", "http://a"))
        await self.storage.services.create(ExternalService("s2", "http://b"))
        events = await self.events_since("0-0")
        last = await self.storage.events.last_id()
        self.assertEqual(last, events[-1].event_id)
        self.assertEqual(await self.events_since(last), [])

    async def test_read_returns_only_newer_events_in_order(self) -> None:
        """Reading after an event's id gives the later events, oldest first."""
        for name in ("s1", "s2", "s3"):
            await self.storage.services.create(ExternalService(name, "http://a"))
        first = (await self.events_since("0-0"))[0]
        self.assertEqual([e.key for e in await self.events_since(first.event_id)], ["s2", "s3"])

    async def test_blocking_read_wakes_up_on_write(self) -> None:
        """A read waiting for news returns the event written while it waited."""
        start = await self.storage.events.last_id()
        reading = self.storage.events.read(start, 10.0)
        await self.storage.services.create(ExternalService("s1", "http://a"))
        [event] = await reading
        self.assertEqual((event.type, event.key), ("service_created", "s1"))

    async def test_blocking_read_times_out_empty(self) -> None:
        """A read with no news returns an empty list once ``block`` has passed."""
        start = await self.storage.events.last_id()
        reading = self.storage.events.read(start, 0.2)
        await self.sleep(0.3)
        self.assertEqual(await reading, [])

    async def test_reader_behind_trimmed_events_is_told_to_reload(self) -> None:
        """Reading from a position whose successors were trimmed raises EventsTrimmed.

        EventsTrimmed is a StorageUnavailable, so readers that only know that one
        (such as the mirror's generic path) still reload.
        """
        storage = self.storage_keeping(10)
        await storage.services.create(ExternalService("s0", "http://a"))
        behind = await storage.events.last_id()
        for i in range(1, 300):
            await storage.services.create(ExternalService(f"s{i}", "http://a"))
        with self.assertRaises(EventsTrimmed):
            await storage.events.read(behind, 0)
        with self.assertRaises(StorageUnavailable):
            await storage.events.read("0-0", 0)
        current = await storage.events.last_id()
        await storage.services.delete("s0")
        self.assertEqual(len(await storage.events.read(current, 0)), 1)

    async def test_holds_tells_whether_a_reader_can_resume(self) -> None:
        """``holds`` is True for a kept event, False for ``0-0``, a trimmed or unknown id."""
        storage = self.storage_keeping(10)
        self.assertFalse(await storage.events.holds("0-0"))
        await storage.services.create(ExternalService("s0", "http://a"))
        first = await storage.events.last_id()
        self.assertTrue(await storage.events.holds(first))
        self.assertFalse(await storage.events.holds("1-1"))
        for i in range(1, 300):
            await storage.services.create(ExternalService(f"s{i}", "http://a"))
        self.assertFalse(await storage.events.holds(first))
        self.assertTrue(await storage.events.holds(await storage.events.last_id()))


class ChallengeStoreContract(StorageBackend):
    """IChallengeStore."""

    async def test_put_then_get(self) -> None:
        """A published answer is returned for its token only."""
        await self.storage.challenges.put("tok", "tok.thumb", 60)
        self.assertEqual(await self.storage.challenges.get("tok"), "tok.thumb")
        self.assertIsNone(await self.storage.challenges.get("other"))

    async def test_delete_stops_answering(self) -> None:
        """After delete the token has no answer; deleting twice is harmless."""
        await self.storage.challenges.put("tok", "tok.thumb", 60)
        await self.storage.challenges.delete("tok")
        await self.storage.challenges.delete("tok")
        self.assertIsNone(await self.storage.challenges.get("tok"))

    async def test_answer_expires(self) -> None:
        """An answer disappears by itself after its ttl."""
        await self.storage.challenges.put("tok", "tok.thumb", 0.1)
        await self.sleep(0.25)
        self.assertIsNone(await self.storage.challenges.get("tok"))


class LocksContract(StorageBackend):
    """ILocks."""

    async def test_second_acquire_fails_while_held(self) -> None:
        """A held lock cannot be taken; another name can."""
        self.assertIsNotNone(await self.storage.locks.acquire("acme", 60))
        self.assertIsNone(await self.storage.locks.acquire("acme", 60))
        self.assertIsNotNone(await self.storage.locks.acquire("other", 60))

    async def test_fencing_tokens_increase(self) -> None:
        """Each acquisition after a release gets a larger fencing token."""
        first = await self.storage.locks.acquire("acme", 60)
        assert first is not None
        await self.storage.locks.release("acme", first)
        second = await self.storage.locks.acquire("acme", 60)
        assert second is not None
        self.assertGreater(second, first)

    async def test_expired_lock_can_be_taken_and_old_holder_is_fenced(self) -> None:
        """After expiry another holder takes over; the old token can neither refresh nor release."""
        old = await self.storage.locks.acquire("acme", 0.1)
        await self.sleep(0.25)
        new = await self.storage.locks.acquire("acme", 60)
        assert old is not None and new is not None
        self.assertGreater(new, old)
        self.assertFalse(await self.storage.locks.refresh("acme", old, 60))
        await self.storage.locks.release("acme", old)
        self.assertIsNone(await self.storage.locks.acquire("acme", 60))

    async def test_refresh_extends_a_held_lock(self) -> None:
        """A refreshed lock outlives its original ttl."""
        token = await self.storage.locks.acquire("acme", 0.2)
        assert token is not None
        self.assertTrue(await self.storage.locks.refresh("acme", token, 60))
        await self.sleep(0.3)
        self.assertIsNone(await self.storage.locks.acquire("acme", 60))


class AccountKeyStoreContract(StorageBackend):
    """IAccountKeyStore."""

    async def test_put_get_replace(self) -> None:
        """Keys are kept per directory URL and can be replaced."""
        url = "https://acme.example/directory"
        self.assertIsNone(await self.storage.accounts.get(url))
        await self.storage.accounts.put(url, "PEM-1")
        await self.storage.accounts.put(url, "PEM-2")
        self.assertEqual(await self.storage.accounts.get(url), "PEM-2")
        self.assertIsNone(await self.storage.accounts.get(url + "/other"))


class PingContract(StorageBackend):
    """IStorage itself: ping and the interfaces of every part."""

    def test_provides_every_interface(self) -> None:
        """The storage and each of its stores fully provide their interfaces."""
        verifyObject(IStorage, self.storage)
        for name, interface in (
            ("proxies", IProxyStore),
            ("routes", IRouteStore),
            ("certificates", ICertificateStore),
            ("tokens", ITokenStore),
            ("services", IServiceStore),
            ("docker_services", IDockerServiceStore),
            ("events", IEventLog),
            ("challenges", IChallengeStore),
            ("locks", ILocks),
            ("accounts", IAccountKeyStore),
            ("auth_rules", IAuthRuleStore),
        ):
            self.assertTrue(verifyObject(interface, getattr(self.storage, name)), name)

    async def test_ping_when_up(self) -> None:
        """A reachable store answers ping with True."""
        self.assertTrue(await self.storage.ping())


#: every contract, for backends that run them all
ALL_CONTRACTS: tuple[type[StorageBackend], ...] = (
    ProxyStoreContract,
    RouteStoreContract,
    ServiceStoreContract,
    DockerServiceStoreContract,
    CertificateStoreContract,
    TokenStoreContract,
    EventLogContract,
    ChallengeStoreContract,
    LocksContract,
    AccountKeyStoreContract,
    AuthRuleStoreContract,
    PingContract,
)
