"""Tests for :mod:`oauthproxy.storage.address`: parsing ``REDIS_URL``."""

from __future__ import annotations

from urllib.parse import quote

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from oauthproxy.errors import ConfigError
from oauthproxy.storage.address import RedisAddress, parse_redis_url

hosts = st.one_of(
    st.just("localhost"),
    st.ip_addresses(v=4).map(str),
    st.from_regex(r"\A[a-z][a-z0-9-]{0,20}(\.[a-z][a-z0-9-]{0,20}){0,3}\Z"),
)
passwords = st.text(min_size=1, max_size=30).filter(lambda s: s.strip() == s)


class ParseRedisUrlTests(SynchronousTestCase):
    """``parse_redis_url`` accepts the documented forms and names bad parts."""

    def test_defaults(self) -> None:
        """A bare host gets port 6379, database 0, no password, no TLS."""
        self.assertEqual(
            parse_redis_url("redis://localhost"), RedisAddress(host="localhost", port=6379)
        )

    def test_full_tcp_url(self) -> None:
        """Password, port and database are all read from a redis:// URL."""
        self.assertEqual(
            parse_redis_url("redis://:s3cret@10.0.0.5:6380/3"),
            RedisAddress(host="10.0.0.5", port=6380, db=3, password="s3cret"),
        )

    def test_acl_user(self) -> None:
        """A user name in the URL (or the unix query) selects a Redis ACL user."""
        self.assertEqual(
            [
                (a.username, a.password)
                for a in (
                    parse_redis_url("redis://app:pw@h"),
                    parse_redis_url("unix:///s?user=app&password=pw"),
                    parse_redis_url("redis://:pw@h"),
                )
            ],
            [("app", "pw"), ("app", "pw"), (None, "pw")],
        )

    def test_rediss_means_tls(self) -> None:
        """The rediss:// scheme selects TLS."""
        self.assertTrue(parse_redis_url("rediss://cache.example.com").tls)

    def test_ipv6_literal(self) -> None:
        """Bracketed IPv6 literals are unbracketed and recognised as loopback."""
        address = parse_redis_url("redis://[::1]:7000")
        self.assertEqual((address.host, address.port, address.is_loopback), ("::1", 7000, True))

    def test_unix_socket_with_db(self) -> None:
        """unix:// URLs carry an absolute path and an optional ``db`` parameter."""
        self.assertEqual(
            parse_redis_url("unix:///run/redis/redis.sock?db=2"),
            RedisAddress(unix_path="/run/redis/redis.sock", db=2),
        )

    def test_explicit_password_overrides_url(self) -> None:
        """A password argument (REDIS_PASSWORD) wins over the URL's."""
        self.assertEqual(
            parse_redis_url("redis://:inurl@h", password="explicit").password, "explicit"
        )

    def test_repr_hides_password(self) -> None:
        """Logging an address never shows its password."""
        self.assertNotIn("hunter2", repr(parse_redis_url("redis://:hunter2@h")))

    def test_loopback_detection(self) -> None:
        """Loopback names/IPs and unix sockets are loopback; other hosts are not."""
        self.assertEqual(
            [
                parse_redis_url(u).is_loopback
                for u in ("redis://127.0.0.2", "redis://localhost", "unix:///s", "redis://10.1.1.1")
            ],
            [True, True, True, False],
        )

    def test_errors_name_the_problem(self) -> None:
        """Every malformed URL raises ConfigError on REDIS_URL with a specific detail."""
        cases = {
            "": "empty",
            "localhost:6379": "not a URL",
            "http://h": "unsupported scheme",
            "redis://:6379": "no host",
            "redis://h:99999": "invalid port",
            "redis://h:0": "port 0",
            "redis://h/x": "database number",
            "redis://h/1?x=1": "query strings",
            "unix://relative.sock": "absolute",
            "unix:///s?bogus=1": "unknown query parameter",
        }
        for url, expected in cases.items():
            with self.assertRaises(ConfigError, msg=url) as raised:
                parse_redis_url(url)
            self.assertEqual(raised.exception.field, "REDIS_URL")
            self.assertIn(expected, raised.exception.detail, url)

    def test_error_does_not_leak_password(self) -> None:
        """A rejected URL's password is not echoed in the error detail."""
        with self.assertRaises(ConfigError) as raised:
            parse_redis_url("redis://:topsecret@h:99999")
        self.assertNotIn("topsecret", raised.exception.detail)

    @given(
        host=hosts,
        port=st.integers(1, 65535),
        db=st.integers(0, 15),
        password=st.none() | passwords,
        tls=st.booleans(),
    )
    def test_round_trip(
        self, host: str, port: int, db: int, password: str | None, tls: bool
    ) -> None:
        """Any well-formed TCP URL parses back to the parts it was built from."""
        auth = f":{quote(password, safe='')}@" if password is not None else ""
        url = f"{'rediss' if tls else 'redis'}://{auth}{host}:{port}/{db}"
        self.assertEqual(
            parse_redis_url(url),
            RedisAddress(host=host, port=port, db=db, password=password, tls=tls),
        )

    @given(url=st.text(max_size=60))
    def test_arbitrary_text_parses_or_raises_config_error(self, url: str) -> None:
        """No input makes the parser fail with anything but ConfigError."""
        try:
            parse_redis_url(url)
        except ConfigError as e:
            self.assertEqual(e.field, "REDIS_URL")


class SentinelUrlTests(SynchronousTestCase):
    """``sentinel://`` names Redis Sentinels and the master they watch (issue 13)."""

    def test_sentinels_master_name_and_database(self) -> None:
        """Several sentinels (port 26379 by default, IPv6 in brackets), a name, a database."""
        address = parse_redis_url("sentinel://:pw@127.0.0.1:26380,[::1],s3.example/main/2")
        self.assertEqual(
            address.sentinels, (("127.0.0.1", 26380), ("::1", 26379), ("s3.example", 26379))
        )
        self.assertEqual((address.master_name, address.db, address.password), ("main", 2, "pw"))
        self.assertFalse(address.tls)
        self.assertNotIn("pw", repr(address))

    def test_sentinels_scheme_is_tls_and_the_sentinel_password_is_separate(self) -> None:
        """``sentinels://`` turns TLS on; REDIS_SENTINEL_PASSWORD is the sentinels' own."""
        address = parse_redis_url("sentinels://h1,h2/main", "master-pw", "sentinel-pw")
        self.assertTrue(address.tls)
        self.assertEqual(
            (address.password, address.sentinel_password), ("master-pw", "sentinel-pw")
        )
        self.assertNotIn("sentinel-pw", repr(address))

    def test_loopback_only_when_every_sentinel_is(self) -> None:
        """One remote sentinel makes the address remote (ATK-29 then wants a password)."""
        self.assertTrue(parse_redis_url("sentinel://127.0.0.1,localhost/m").is_loopback)
        self.assertFalse(parse_redis_url("sentinel://127.0.0.1,10.1.1.1/m").is_loopback)

    def test_malformed_sentinel_urls_name_the_problem(self) -> None:
        """No master name, no host, a bad port, a query: each refused with a reason."""
        for url, reason in (
            ("sentinel://h1:26379", "no master name"),
            ("sentinel:///main", "no sentinel host"),
            ("sentinel://h1:99999/main", "invalid port"),
            ("sentinel://h1/main?x=1", "not supported"),
        ):
            error = self.assertRaises(ConfigError, parse_redis_url, url)
            self.assertIn(reason, error.detail)
            self.assertEqual(error.field, "REDIS_URL")
