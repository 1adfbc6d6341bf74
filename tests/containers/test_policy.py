"""The pure port policy: which reservations clash, which ports are handed out."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from oauthproxy.containers.policy import (
    PortPolicy,
    Reservation,
    bind_address,
    clashes,
    own_clash,
    reservation_from_key,
    reservations,
)
from oauthproxy.model import DockerService, ServicePort

binds = st.sampled_from(["127.0.0.1", "127.0.0.2", "0.0.0.0", "::", "::1", "10.0.0.1"])
reservation = st.builds(
    Reservation,
    protocol=st.sampled_from(["tcp", "udp"]),
    port=st.integers(min_value=1, max_value=20),
    bind=binds,
    service=st.sampled_from(["a", "b"]),
    port_name=st.sampled_from(["http", "admin"]),
)


class ClashTests(SynchronousTestCase):
    """Two reservations clash on the same protocol and port with overlapping addresses."""

    def test_specific_addresses_do_not_clash_with_each_other(self) -> None:
        """127.0.0.1:8080 and 127.0.0.2:8080 can both be held."""
        a = Reservation("tcp", 8080, "127.0.0.1", "a", "http")
        b = Reservation("tcp", 8080, "127.0.0.2", "b", "http")
        self.assertFalse(clashes(a, b))

    def test_a_wildcard_clashes_with_every_address(self) -> None:
        """0.0.0.0 (and ::) take the port on every address."""
        wildcard = Reservation("tcp", 8080, "0.0.0.0", "a", "http")
        for bind in ("127.0.0.1", "::1", "0.0.0.0", "::"):
            self.assertTrue(clashes(Reservation("tcp", 8080, bind, "b", "x"), wildcard), bind)

    def test_tcp_and_udp_never_clash(self) -> None:
        """The same number over TCP and UDP are two ports."""
        a = Reservation("tcp", 53, "0.0.0.0", "a", "dns")
        self.assertFalse(clashes(Reservation("udp", 53, "0.0.0.0", "b", "dns"), a))

    def test_a_service_never_clashes_with_itself(self) -> None:
        """A service's own reservations are replaced, not competed with."""
        a = Reservation("tcp", 8080, "0.0.0.0", "a", "http")
        self.assertFalse(clashes(Reservation("tcp", 8080, "0.0.0.0", "a", "other"), a))

    @given(reservation, reservation)
    def test_clashing_is_symmetric(self, a: Reservation, b: Reservation) -> None:
        """If a cannot be held next to b, b cannot be held next to a."""
        self.assertEqual(clashes(a, b), clashes(b, a))

    @given(reservation)
    def test_the_store_key_round_trips(self, r: Reservation) -> None:
        """``key``/``holder`` as the store keeps them give back the reservation."""
        self.assertEqual(reservation_from_key(r.key, r.holder), r)

    def test_an_update_holds_old_and_new_ports(self) -> None:
        """While an update is in flight, the previous record's ports stay reserved too."""
        old = DockerService("web", "img:1", ports=(ServicePort("http", 8080, 80),))
        new = DockerService("web", "img:1", ports=(ServicePort("http", 8081, 80),))
        held = {r.port for r in reservations(new, old)}
        self.assertEqual(held, {8080, 8081})

    def test_a_services_own_ports_must_not_collide(self) -> None:
        """Two ports of one service with one name, or one host port, are refused."""
        self.assertIn(
            "named",
            own_clash([ServicePort("a", 1, 1), ServicePort("a", 2, 2)]) or "",
        )
        self.assertIn(
            "both take",
            own_clash([ServicePort("a", 9000, 1, "0.0.0.0"), ServicePort("b", 9000, 2)]) or "",
        )
        self.assertIsNone(own_clash([ServicePort("a", 9000, 1), ServicePort("b", 9001, 2)]))


class PolicyTests(SynchronousTestCase):
    """Ranges and restricted ports."""

    def test_restricted_ports_are_refused_with_the_setting_named(self) -> None:
        """22 is never a service's host port; the reason names the setting."""
        reason = PortPolicy().refusal(22)
        self.assertIn("OAUTHPROXY_RESTRICTED_PORTS", reason or "")
        self.assertIsNone(PortPolicy().refusal(8080))

    def test_candidates_skip_taken_and_restricted_ports(self) -> None:
        """Automatic ports come from the ranges, lowest first, never restricted or taken."""
        policy = PortPolicy(ranges=((20, 26),), restricted=(22, 25))
        self.assertEqual(list(policy.candidates([21, 24])), [20, 23, 26])

    @given(
        st.lists(st.integers(min_value=1, max_value=200), max_size=30),
        st.lists(st.integers(min_value=1, max_value=200), max_size=10),
    )
    def test_available_ranges_are_the_candidates(
        self, taken: list[int], restricted: list[int]
    ) -> None:
        """The free ranges listed hold exactly the ports that would be handed out."""
        policy = PortPolicy(ranges=((50, 120), (150, 160)), restricted=tuple(restricted))
        listed = {p for a, b in policy.available_ranges(taken) for p in range(a, b + 1)}
        self.assertEqual(listed, set(policy.candidates(taken)))

    def test_bind_addresses_are_normalised(self) -> None:
        """``localhost`` is 127.0.0.1; IPv6 is compressed; names are refused."""
        self.assertEqual(bind_address("localhost"), "127.0.0.1")
        self.assertEqual(bind_address("0:0:0:0:0:0:0:1"), "::1")
        with self.assertRaises(ValueError):
            bind_address("example.com")
