"""Tests for :mod:`oauthproxy.config`: precedence, validation and the ``.env`` parser."""

from __future__ import annotations

import base64
import os

import attrs
from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from oauthproxy.config import (
    SETTINGS,
    ClientSettings,
    Config,
    load_client_settings,
    load_config,
    parse_dotenv,
    read_dotenv,
)
from oauthproxy.config_parsers import listener_port, size_or_zero
from oauthproxy.errors import ConfigError

env_names = st.from_regex(r"[A-Z_][A-Z0-9_]{0,20}", fullmatch=True)
plain_values = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E, blacklist_characters="\"'#\\"),
    max_size=30,
)


class PublicPortTests(SynchronousTestCase):
    """The ports public URLs name (redirects, OAuth resources; MCP-3)."""

    def test_tcp_port_is_used(self) -> None:
        """``tcp:8443:interface=::`` and ``tcp:port=8443`` both give 8443."""
        self.assertEqual(listener_port("tcp:8443:interface=\\:\\:"), 8443)
        self.assertEqual(listener_port("tcp:port=8443"), 8443)

    def test_unknown_ports_name_none(self) -> None:
        """systemd sockets, unix sockets, port 0 and a disabled listener give None."""
        for description in ("systemd:domain=INET:index=0", "unix:/run/x.sock", "tcp:0", None):
            self.assertIsNone(listener_port(description), description)

    def test_public_port_is_the_listeners_unless_configured(self) -> None:
        """MCP-3: the listener's port, the scheme's default, or the configured public one."""
        config = load_config({"https": "tcp:8443", "http": "tcp:8080"}, {}, None)
        self.assertEqual((config.public_port("https"), config.public_port("http")), (8443, 8080))
        self.assertEqual(load_config({}, {}, None).public_port("https"), 443)
        behind = load_config(
            {"https": "tcp:8443", "public-https-port": "443"},
            {"OAUTHPROXY_PUBLIC_HTTP_PORT": "80", "OAUTHPROXY_HTTP": "tcp:8080"},
            None,
        )
        self.assertEqual((behind.public_port("https"), behind.public_port("http")), (443, 80))

    def test_bad_public_port_is_refused(self) -> None:
        """A public port out of range names the setting."""
        with self.assertRaises(ConfigError) as caught:
            load_config({}, {"OAUTHPROXY_PUBLIC_HTTPS_PORT": "0"}, None)
        self.assertIn("OAUTHPROXY_PUBLIC_HTTPS_PORT", str(caught.exception))


class PrecedenceTests(SynchronousTestCase):
    """Options > environment > ``.env`` > defaults."""

    def test_defaults_when_nothing_is_set(self) -> None:
        """With no input the Config has its declared defaults."""
        self.assertEqual(load_config({}, {}, None), Config())

    def test_option_beats_environment_and_dotenv(self) -> None:
        """``--http`` wins over OAUTHPROXY_HTTP, HTTP_PORT and ``.env``."""
        config = load_config(
            {"http": "tcp:8081"},
            {"OAUTHPROXY_HTTP": "tcp:8082", "HTTP_PORT": "8083"},
            "OAUTHPROXY_HTTP=tcp:8084\n",
        )
        self.assertEqual(config.http_endpoint, "tcp:8081")

    def test_environment_beats_dotenv(self) -> None:
        """A variable in the environment wins over the same one in ``.env``."""
        config = load_config({}, {"LOG_LEVEL": "error"}, "LOG_LEVEL=debug\n")
        self.assertEqual(config.log_level, "error")

    def test_dotenv_beats_default(self) -> None:
        """``.env`` values apply when nothing else sets them."""
        config = load_config({}, {}, "BASE_DOMAIN=Example.COM\nCERT_GEN_MAX_WORKERS=2\n")
        self.assertEqual((config.base_domain, config.cert_gen_max_workers), ("example.com", 2))

    def test_http_port_maps_to_a_tcp_listener(self) -> None:
        """The seed's HTTP_PORT/HTTPS_PORT become ``tcp:<port>`` endpoints."""
        config = load_config({}, {"HTTP_PORT": "8080", "HTTPS_PORT": "8443"}, None)
        self.assertEqual((config.http_endpoint, config.https_endpoint), ("tcp:8080", "tcp:8443"))

    def test_endpoint_option_off_disables_listener(self) -> None:
        """``--https off`` turns the listener off."""
        self.assertIsNone(load_config({"https": "off"}, {}, None).https_endpoint)

    def test_unset_options_are_ignored(self) -> None:
        """An option whose value is None (not given) does not hide the environment."""
        config = load_config({"redis": None}, {"REDIS_URL": "redis://127.0.0.1:6380/2"}, None)
        self.assertEqual(config.redis_url, "redis://127.0.0.1:6380/2")

    def test_every_seed_variable_is_read(self) -> None:
        """Each environment variable the seed documents is a setting."""
        names = {name for setting in SETTINGS for name in setting.env}
        seed = {
            "REDIS_URL", "REDIS_PASSWORD", "HTTP_PORT", "HTTPS_PORT", "BASE_DOMAIN",
            "ADMIN_EMAIL", "ACME_DIRECTORY_URL", "ACME_STAGING_URL", "RENEWAL_CHECK_INTERVAL",
            "RENEWAL_THRESHOLD_DAYS", "CERT_GEN_MAX_WORKERS", "GITHUB_CLIENT_ID",
            "GITHUB_CLIENT_SECRET", "OAUTH_JWT_ALGORITHM", "OAUTH_JWT_PRIVATE_KEY_B64",
            "OAUTH_ACCESS_TOKEN_LIFETIME", "OAUTH_REFRESH_TOKEN_LIFETIME",
            "OAUTH_SESSION_TIMEOUT", "OAUTH_CLIENT_LIFETIME", "OAUTH_ALLOWED_GITHUB_USERS",
            "LOG_LEVEL",
        }  # fmt: skip
        self.assertEqual(seed - names, set())

    def test_every_setting_names_a_config_field(self) -> None:
        """The settings table and the Config fields agree."""
        fields = {a.name for a in attrs.fields(Config)}
        self.assertEqual({s.field for s in SETTINGS} - fields, set())

    def test_log_level_accepts_seed_spelling(self) -> None:
        """``LOG_LEVEL=INFO`` and ``WARNING`` are understood."""
        self.assertEqual(load_config({}, {"LOG_LEVEL": "INFO"}, None).log_level, "info")
        self.assertEqual(load_config({}, {"LOG_LEVEL": "WARNING"}, None).log_level, "warn")

    def test_allowed_users_list(self) -> None:
        """OAUTH_ALLOWED_GITHUB_USERS is a comma-separated list."""
        config = load_config({}, {"OAUTH_ALLOWED_GITHUB_USERS": "alice, bob"}, None)
        self.assertEqual(config.oauth_allowed_github_users, ("alice", "bob"))

    def test_cimd_allow_list_is_empty_by_default(self) -> None:
        """ATK-4: CIMD fetches reach only public addresses unless the operator lists more."""
        config = load_config({}, {}, None)
        self.assertEqual((config.cimd_allowed_networks, config.cimd_ca_bundle), ((), None))

    def test_cimd_allowed_networks_list(self) -> None:
        """OAUTHPROXY_CIMD_ALLOWED_NETWORKS is a comma-separated list of CIDRs."""
        config = load_config(
            {}, {"OAUTHPROXY_CIMD_ALLOWED_NETWORKS": "127.0.0.1/8, fd00::/8"}, None
        )
        self.assertEqual(config.cimd_allowed_networks, ("127.0.0.0/8", "fd00::/8"))

    def test_bad_cimd_network_is_refused(self) -> None:
        """A CIMD allow-list entry that is not a network names the setting."""
        with self.assertRaises(ConfigError) as caught:
            load_config({}, {"OAUTHPROXY_CIMD_ALLOWED_NETWORKS": "intranet"}, None)
        self.assertIn("OAUTHPROXY_CIMD_ALLOWED_NETWORKS", str(caught.exception))

    def test_refresh_retry_window_is_off_by_default(self) -> None:
        """ATK-34: without OAUTH_REFRESH_RETRY_WINDOW a rotated refresh token never works."""
        self.assertEqual(load_config({}, {}, None).oauth_refresh_retry_window, 0.0)
        config = load_config({}, {"OAUTH_REFRESH_RETRY_WINDOW": "2.5"}, None)
        self.assertEqual(config.oauth_refresh_retry_window, 2.5)

    def test_long_or_negative_retry_window_is_refused(self) -> None:
        """ATK-34: a window over 300 s (or below 0) is refused, naming the setting."""
        for value in ("301", "-1", "soon", "inf"):
            with self.assertRaises(ConfigError) as caught:
                load_config({}, {"OAUTH_REFRESH_RETRY_WINDOW": value}, None)
            self.assertIn("OAUTH_REFRESH_RETRY_WINDOW", str(caught.exception))

    def test_registration_limits_have_safe_defaults(self) -> None:
        """ATK-37: open registration, capped, rate-limited, unused clients gone in a day."""
        config = load_config({}, {}, None)
        self.assertEqual(config.oauth_registration, "open")
        self.assertEqual(config.oauth_max_clients, 1000)
        self.assertEqual(config.oauth_register_rate, (60, 3600.0))
        self.assertEqual(config.oauth_failure_rate, (30, 60.0))
        self.assertEqual(config.oauth_unused_client_lifetime, 86400)

    def test_registration_limits_are_configuration(self) -> None:
        """ATK-37: modes, caps and rates are settings (rates as N/period, or off)."""
        config = load_config(
            {},
            {
                "OAUTH_REGISTRATION": "Token",
                "OAUTH_MAX_CLIENTS": "50",
                "OAUTH_REGISTER_RATE": "5/min",
                "OAUTH_FAILURE_RATE": "off",
                "OAUTH_UNUSED_CLIENT_LIFETIME": "3600",
            },
            None,
        )
        self.assertEqual(config.oauth_registration, "token")
        self.assertEqual(config.oauth_max_clients, 50)
        self.assertEqual(config.oauth_register_rate, (5, 60.0))
        self.assertIsNone(config.oauth_failure_rate)
        self.assertEqual(config.oauth_unused_client_lifetime, 3600)

    def test_bad_registration_settings_are_refused(self) -> None:
        """ATK-37: a wrong mode, rate or cap stops the daemon, naming the setting."""
        for name, value in (
            ("OAUTH_REGISTRATION", "sometimes"),
            ("OAUTH_REGISTER_RATE", "5 per hour"),
            ("OAUTH_FAILURE_RATE", "0/minute"),
            ("OAUTH_MAX_CLIENTS", "0"),
        ):
            with self.assertRaises(ConfigError) as caught:
                load_config({}, {name: value}, None)
            self.assertIn(name, str(caught.exception))

    def test_request_log_can_be_switched_off(self) -> None:
        """OAUTHPROXY_REQUEST_LOG takes on/off (and true/false, yes/no, 1/0)."""
        self.assertTrue(load_config({}, {}, None).request_log)
        for off in ("off", "false", "No", "0"):
            config = load_config({}, {"OAUTHPROXY_REQUEST_LOG": off}, None)
            self.assertFalse(config.request_log)

    def test_secrets_are_not_in_repr(self) -> None:
        """Passwords and keys never show up when a Config is printed or logged."""
        config = load_config(
            {}, {"REDIS_PASSWORD": "hunter2-secret", "GITHUB_CLIENT_SECRET": "gh-secret"}, None
        )
        self.assertNotIn("hunter2-secret", repr(config))
        self.assertNotIn("gh-secret", repr(config))


class ValidationTests(SynchronousTestCase):
    """Invalid values raise ConfigError naming where they came from."""

    def assert_refused(
        self, field: str, options: dict[str, object], environ: dict[str, str]
    ) -> None:
        """``load_config`` raises ConfigError with ``field`` in field and detail."""
        error = self.assertRaises(ConfigError, load_config, options, environ, None)
        self.assertEqual(error.field, field)
        self.assertIn(field, error.detail)
        self.assertNotIn("\n", error.detail)

    def test_endpoint_with_bad_port_is_refused(self) -> None:
        """``--http tcp:notaport`` is refused, naming ``--http``."""
        self.assert_refused("--http", {"http": "tcp:notaport"}, {})

    def test_request_log_switch_must_be_on_or_off(self) -> None:
        """A value that is not on/off is refused, naming the setting."""
        self.assert_refused("OAUTHPROXY_REQUEST_LOG", {}, {"OAUTHPROXY_REQUEST_LOG": "maybe"})

    def test_unknown_endpoint_type_is_refused(self) -> None:
        """An endpoint type Twisted does not know is refused."""
        self.assert_refused("OAUTHPROXY_API", {}, {"OAUTHPROXY_API": "carrier-pigeon:9"})

    def test_gateway_listener_must_be_a_plain_socket(self) -> None:
        """``ssl:``/``haproxy:`` would layer TLS/PROXY in the wrong order: refused."""
        self.assert_refused("--https", {"https": "ssl:443"}, {})
        self.assert_refused("--proxy-http", {"proxy-http": "haproxy:tcp:10080"}, {})

    def test_out_of_range_port_is_refused(self) -> None:
        """A TCP port above 65535 is refused before listening."""
        self.assert_refused("--api", {"api": "tcp:70000:interface=127.0.0.1"}, {})
        self.assert_refused("HTTPS_PORT", {}, {"HTTPS_PORT": "65536"})

    def test_non_loopback_redis_without_password_is_refused(self) -> None:
        """ATK-29: a remote Redis without a password refuses to start."""
        self.assert_refused("--redis", {"redis": "redis://10.1.2.3:6379/0"}, {})
        self.assert_refused("REDIS_URL", {}, {"REDIS_URL": "redis://redis.example:6379"})

    def test_non_loopback_redis_with_password_is_accepted(self) -> None:
        """ATK-29: with REDIS_PASSWORD (or one in the URL) a remote Redis is fine."""
        config = load_config(
            {}, {"REDIS_URL": "redis://10.1.2.3:6379", "REDIS_PASSWORD": "pw"}, None
        )
        self.assertEqual(config.redis_password, "pw")
        load_config({"redis": "rediss://:pw@redis.example:6380/1"}, {}, None)

    def test_redis_ca_bundle_only_with_tls(self) -> None:
        """OAUTHPROXY_REDIS_CA_BUNDLE needs a rediss:// or sentinels:// Redis to apply to."""
        bundle = self.mktemp()
        with open(bundle, "w") as f:
            f.write("PEM")
        env = {"OAUTHPROXY_REDIS_CA_BUNDLE": bundle}
        for url in (None, "redis://127.0.0.1:6379", "sentinel://127.0.0.1:26379/main"):
            options = {"redis": url} if url else {}
            error = self.assertRaises(ConfigError, load_config, options, env, None)
            self.assertEqual(error.field, "OAUTHPROXY_REDIS_CA_BUNDLE")
            self.assertIn("not reached over TLS", error.detail)
        for url in ("rediss://127.0.0.1:6380", "sentinels://127.0.0.1:26379/main"):
            config = load_config({"redis": url}, env, None)
            self.assertEqual(config.redis_ca_bundle, os.path.abspath(bundle))
        self.assert_refused(
            "OAUTHPROXY_REDIS_CA_BUNDLE",
            {"redis": "rediss://127.0.0.1:6380"},
            {"OAUTHPROXY_REDIS_CA_BUNDLE": "/no/such/file.pem"},
        )

    def test_redis_client_certificate_needs_its_key_and_tls(self) -> None:
        """OAUTHPROXY_REDIS_CLIENT_CERT and ..._KEY come together, for a TLS Redis."""
        pem = self.mktemp()
        with open(pem, "w") as f:
            f.write("PEM")
        tls = {"redis": "rediss://127.0.0.1:6380"}
        error = self.assertRaises(
            ConfigError, load_config, tls, {"OAUTHPROXY_REDIS_CLIENT_CERT": pem}, None
        )
        self.assertEqual(error.field, "OAUTHPROXY_REDIS_CLIENT_CERT")
        self.assertIn("OAUTHPROXY_REDIS_CLIENT_KEY", error.detail)
        both = {"OAUTHPROXY_REDIS_CLIENT_CERT": pem, "OAUTHPROXY_REDIS_CLIENT_KEY": pem}
        config = load_config(tls, both, None)
        self.assertEqual(config.redis_client_key, os.path.abspath(pem))
        error = self.assertRaises(
            ConfigError, load_config, {"redis": "redis://127.0.0.1:6379"}, both, None
        )
        self.assertIn("not reached over TLS", error.detail)

    def test_loopback_redis_without_password_is_accepted(self) -> None:
        """A loopback Redis needs no password."""
        config = load_config({"redis": "redis://127.0.0.1:6379"}, {}, None)
        self.assertEqual(config.redis_url, "redis://127.0.0.1:6379")

    def test_bad_redis_url_names_the_setting(self) -> None:
        """A malformed Redis URL is refused, naming where it came from."""
        self.assert_refused("REDIS_URL", {}, {"REDIS_URL": "http://127.0.0.1"})

    def test_non_positive_numbers_are_refused(self) -> None:
        """Intervals, lifetimes and worker counts must be positive."""
        self.assert_refused("RENEWAL_CHECK_INTERVAL", {}, {"RENEWAL_CHECK_INTERVAL": "0"})
        self.assert_refused("CERT_GEN_MAX_WORKERS", {}, {"CERT_GEN_MAX_WORKERS": "-1"})
        self.assert_refused(
            "OAUTH_ACCESS_TOKEN_LIFETIME", {}, {"OAUTH_ACCESS_TOKEN_LIFETIME": "soon"}
        )
        self.assert_refused("RENEWAL_THRESHOLD_DAYS", {}, {"RENEWAL_THRESHOLD_DAYS": "nan"})

    def test_bad_urls_are_refused(self) -> None:
        """ACME directory and GitHub URLs must be absolute http(s) URLs."""
        self.assert_refused("ACME_DIRECTORY_URL", {}, {"ACME_DIRECTORY_URL": "ftp://x/dir"})
        self.assert_refused(
            "OAUTHPROXY_GITHUB_BASE_URL", {}, {"OAUTHPROXY_GITHUB_BASE_URL": "github.com"}
        )

    def test_bad_log_level_is_refused(self) -> None:
        """``--log-level loud`` is refused."""
        self.assert_refused("--log-level", {"log-level": "loud"}, {})

    def test_bad_log_format_is_refused(self) -> None:
        """Only text and json log formats exist."""
        self.assert_refused("--log-format", {"log-format": "xml"}, {})

    def test_bad_secret_key_is_refused(self) -> None:
        """OAUTHPROXY_SECRET_KEY must be 32 bytes of url-safe base64."""
        short = base64.urlsafe_b64encode(b"x" * 16).decode()
        self.assert_refused("OAUTHPROXY_SECRET_KEY", {}, {"OAUTHPROXY_SECRET_KEY": short})

    def test_jwt_key_must_be_a_pem(self) -> None:
        """OAUTH_JWT_PRIVATE_KEY_B64 must decode to a PEM private key."""
        junk = base64.b64encode(b"not a key").decode()
        self.assert_refused("OAUTH_JWT_PRIVATE_KEY_B64", {}, {"OAUTH_JWT_PRIVATE_KEY_B64": junk})

    def test_bad_domain_is_refused(self) -> None:
        """BASE_DOMAIN must be a DNS name."""
        self.assert_refused("BASE_DOMAIN", {}, {"BASE_DOMAIN": "exa mple.com"})

    def test_bad_admin_email_is_refused(self) -> None:
        """ADMIN_EMAIL must look like an address."""
        self.assert_refused("ADMIN_EMAIL", {}, {"ADMIN_EMAIL": "admin"})

    @given(st.integers(min_value=0, max_value=65535))
    def test_any_valid_port_is_accepted(self, port: int) -> None:
        """Every port 0-65535 is a valid HTTP_PORT and ``tcp:`` endpoint."""
        config = load_config(
            {"api": f"tcp:{port}:interface=127.0.0.1"}, {"HTTP_PORT": str(port)}, None
        )
        self.assertEqual(config.http_endpoint, f"tcp:{port}")

    @given(st.text(max_size=12).filter(lambda t: not t.strip().isdigit()))
    def test_non_numeric_http_port_is_refused(self, text: str) -> None:
        """Anything that is not an integer is refused as HTTP_PORT."""
        error = self.assertRaises(ConfigError, load_config, {}, {"HTTP_PORT": text}, None)
        self.assertEqual(error.field, "HTTP_PORT")

    @given(st.text(max_size=30))
    def test_arbitrary_endpoint_text_never_crashes(self, text: str) -> None:
        """Any ``--http`` text either parses or raises ConfigError naming ``--http``."""
        try:
            load_config({"http": text}, {}, None)
        except ConfigError as e:
            self.assertEqual(e.field, "--http")

    @given(st.text(max_size=40))
    def test_arbitrary_redis_url_never_crashes(self, text: str) -> None:
        """Any REDIS_URL text either parses or raises ConfigError naming it."""
        try:
            load_config({}, {"REDIS_URL": text}, None)
        except ConfigError as e:
            self.assertEqual(e.field, "REDIS_URL")


class DotenvTests(SynchronousTestCase):
    """The ``.env`` parser."""

    def test_comments_blank_lines_and_export(self) -> None:
        """Comments and blank lines are skipped; ``export`` is allowed."""
        text = "# comment\n\nexport A=1\nB = two # trailing comment\n"
        self.assertEqual(parse_dotenv(text), {"A": "1", "B": "two"})

    def test_quoted_values(self) -> None:
        """Quotes are removed; double quotes understand escapes, single quotes do not."""
        text = 'A="x # y"\nB=\'a\\nb\'\nC="line\\nnext"\n'
        self.assertEqual(parse_dotenv(text), {"A": "x # y", "B": "a\\nb", "C": "line\nnext"})

    def test_value_may_contain_equals(self) -> None:
        """Only the first ``=`` separates name and value (base64 padding survives)."""
        self.assertEqual(parse_dotenv("K=abc==\n"), {"K": "abc=="})

    def test_malformed_line_names_its_number(self) -> None:
        """A line without ``=`` is refused with its line number."""
        error = self.assertRaises(ConfigError, parse_dotenv, "A=1\nnonsense\n")
        self.assertIn("line 2", error.detail)

    def test_unterminated_quote_is_refused(self) -> None:
        """A value opening a quote that never closes is refused."""
        self.assertRaises(ConfigError, parse_dotenv, 'A="open\n')

    @given(st.dictionaries(env_names, plain_values, max_size=8))
    def test_plain_values_round_trip(self, values: dict[str, str]) -> None:
        """``NAME=value`` lines parse back to the same mapping."""
        text = "".join(f"{k}={v}\n" for k, v in values.items())
        self.assertEqual(parse_dotenv(text), {k: v.strip() for k, v in values.items()})

    @given(
        st.dictionaries(
            env_names,
            st.text(max_size=20).filter(lambda v: "\n" not in v and "\r" not in v),
            max_size=5,
        )
    )
    def test_double_quoted_values_round_trip(self, values: dict[str, str]) -> None:
        """Any single-line value survives double quoting with escapes."""

        def quote(v: str) -> str:
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'

        text = "".join(f"{k}={quote(v)}\n" for k, v in values.items())
        self.assertEqual(parse_dotenv(text), values)

    def test_read_dotenv_reads_the_directory_file(self) -> None:
        """``read_dotenv`` returns the file's text, or None when there is none."""
        directory = self.mktemp()
        os.makedirs(directory)
        self.assertIsNone(read_dotenv(directory))
        with open(os.path.join(directory, ".env"), "w") as f:
            f.write("A=1\n")
        self.assertEqual(read_dotenv(directory), "A=1\n")


class ClientSettingsTests(SynchronousTestCase):
    """What ``oauthproxyctl`` reads."""

    def test_defaults(self) -> None:
        """Without settings the CLI talks to the local admin API without a token."""
        self.assertEqual(load_client_settings({}, {}, None), ClientSettings())

    def test_flags_beat_environment(self) -> None:
        """``--api-url``/``--token`` win over OAUTHPROXY_URL/OAUTHPROXY_TOKEN."""
        settings = load_client_settings(
            {"api-url": "http://127.0.0.1:9100", "token": "acm_flag"},
            {"OAUTHPROXY_URL": "http://127.0.0.1:9200", "OAUTHPROXY_TOKEN": "acm_env"},
            None,
        )
        self.assertEqual(settings, ClientSettings("http://127.0.0.1:9100", "acm_flag"))

    def test_seed_names_are_fallbacks(self) -> None:
        """The seed's API_URL and ADMIN_TOKEN (e.g. in ``.env``) are understood."""
        settings = load_client_settings(
            {}, {}, "API_URL=http://localhost:9000\nADMIN_TOKEN=acm_seed\n"
        )
        self.assertEqual(settings, ClientSettings("http://localhost:9000", "acm_seed"))


class MemoryLimitTests(SynchronousTestCase):
    """``OAUTHPROXY_REDIS_MAXMEMORY`` takes a size, or 0 for no limit."""

    def test_units_and_zero(self) -> None:
        """Plain bytes, k, m, g (also kb, mb...); 0 means no limit."""
        self.assertEqual(
            [size_or_zero(t, "X") for t in ("1024", "64k", "256mb", "1g", "0")],
            [1024, 64 << 10, 256 << 20, 1 << 30, 0],
        )

    def test_nonsense_names_the_setting(self) -> None:
        """Anything else is refused naming the variable."""
        error = self.assertRaises(ConfigError, size_or_zero, "lots", "OAUTHPROXY_REDIS_MAXMEMORY")
        self.assertIn("OAUTHPROXY_REDIS_MAXMEMORY", error.detail)


class WorkersSettingTests(SynchronousTestCase):
    """``--workers N`` / ``OAUTHPROXY_WORKERS`` (issue 13)."""

    def test_default_is_one_process(self) -> None:
        """Without the setting the daemon is a single process."""
        self.assertEqual(load_config({}, {}, None).workers, 1)

    def test_auto_is_one_per_usable_core(self) -> None:
        """``auto`` counts the cores this process may run on."""
        self.assertEqual(
            load_config({"workers": "auto"}, {}, None).workers, len(os.sched_getaffinity(0))
        )
        self.assertEqual(load_config({}, {"OAUTHPROXY_WORKERS": "3"}, None).workers, 3)

    def test_bad_counts_are_refused_naming_the_setting(self) -> None:
        """Zero, negative, too many and words are refused with one line naming the option."""
        for bad in ("0", "-2", "65", "many", ""):
            error = self.assertRaises(ConfigError, load_config, {"workers": bad}, {}, None)
            self.assertEqual(error.field, "--workers")
            self.assertIn("--workers", error.detail)

    def test_an_admin_endpoint_with_its_own_tls_cannot_be_shared(self) -> None:
        """Workers share plain sockets: a layered admin endpoint is refused with --workers."""
        options = {"workers": "2", "api": "haproxy:tcp:9000"}
        error = self.assertRaises(ConfigError, load_config, options, {}, None)
        self.assertEqual(error.field, "--api")
        self.assertIn("cannot be shared", error.detail)

    def test_sentinel_behind_non_loopback_needs_a_password(self) -> None:
        """ATK-29 holds for Sentinel addresses too; REDIS_PASSWORD satisfies it."""
        url = "sentinel://10.0.0.5:26379,10.0.0.6:26379/main"
        error = self.assertRaises(ConfigError, load_config, {"redis": url}, {}, None)
        self.assertIn("Sentinels that are not on loopback", error.detail)
        config = load_config({"redis": url}, {"REDIS_PASSWORD": "pw"}, None)
        self.assertEqual(config.redis_url, url)
