"""Tests for :mod:`oauthproxy.oauth.redirects`: exact matching, registration, return URLs."""

from __future__ import annotations

from urllib.parse import urlsplit

from hypothesis import assume, given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from oauthproxy.oauth.errors import InvalidRedirectUri
from oauthproxy.oauth.redirects import (
    find_redirect_uri,
    infer_application_type,
    redirect_uri_matches,
    safe_return_url,
    validate_registered_redirect_uri,
)

REGISTERED = "https://app.example.test/cb"
LOOPBACK = "http://127.0.0.1/callback"

path_text = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters="#"),
    max_size=30,
)


class MatchTests(SynchronousTestCase):
    """A requested redirect URI against the registered ones (O21-4, ATK-2)."""

    def test_exact_uri_matches(self) -> None:
        """O21-4: the registered URI itself matches."""
        self.assertTrue(redirect_uri_matches(REGISTERED, REGISTERED))

    def test_attack_variants_do_not_match(self) -> None:
        """ATK-2, BCP-1, MCP-13: every near-miss of the registered URI is rejected."""
        for variant in (
            "https://app.example.test/cb/",
            "https://app.example.test/cb/../x",
            "https://app.example.test/cb/x",
            "https://app.example.test/c",
            "https://app.example.test/cb?x=1",
            "https://app.example.test/cb#frag",
            "https://APP.example.test/cb",
            "HTTPS://app.example.test/cb",
            "https://app.example.test/CB",
            "http://app.example.test/cb",
            "https://app.example.test:8443/cb",
            "https://app.example.test.evil/cb",
            "https://evil.test/?https://app.example.test/cb",
            "https://app.example.test@evil.test/cb",
            "https://app.example.test/cb%2F..%2Fx",
            " https://app.example.test/cb",
        ):
            self.assertFalse(redirect_uri_matches(variant, REGISTERED), variant)

    def test_loopback_port_may_change(self) -> None:
        """O21-4: any port is allowed on a registered loopback redirect URI."""
        self.assertTrue(redirect_uri_matches("http://127.0.0.1:51004/callback", LOOPBACK))
        self.assertTrue(
            redirect_uri_matches("http://localhost:3000/cb", "http://localhost:8080/cb")
        )
        self.assertTrue(redirect_uri_matches("http://[::1]:9/callback", "http://[::1]/callback"))

    def test_loopback_host_may_not_change(self) -> None:
        """ATK-2: localhost and 127.0.0.1 are different redirect URIs."""
        self.assertFalse(redirect_uri_matches("http://localhost:5000/callback", LOOPBACK))
        self.assertFalse(redirect_uri_matches("http://127.0.0.2:5000/callback", LOOPBACK))

    def test_loopback_path_must_still_match(self) -> None:
        """ATK-2: only the port is exempt; the path of a loopback URI is compared exactly."""
        self.assertFalse(redirect_uri_matches("http://127.0.0.1:5000/callback/", LOOPBACK))
        self.assertFalse(redirect_uri_matches("http://127.0.0.1:5000/other", LOOPBACK))
        self.assertFalse(redirect_uri_matches("https://127.0.0.1:5000/callback", LOOPBACK))

    def test_port_exception_does_not_apply_to_other_hosts(self) -> None:
        """ATK-2: a port change on a non-loopback URI is rejected."""
        self.assertFalse(
            redirect_uri_matches(
                "https://app.example.test:444/cb", "https://app.example.test:443/cb"
            )
        )

    def test_out_of_range_loopback_port_is_rejected(self) -> None:
        """O21-4: the loopback port must be a real port."""
        self.assertFalse(redirect_uri_matches("http://127.0.0.1:99999/callback", LOOPBACK))
        self.assertFalse(redirect_uri_matches("http://127.0.0.1:0/callback", LOOPBACK))

    @given(path_text, path_text)
    def test_non_loopback_matches_only_identical_strings(self, a: str, b: str) -> None:
        """O21-4, ATK-2: for https URIs, matching is plain string equality."""
        left, right = f"https://h.example.test/{a}", f"https://h.example.test/{b}"
        self.assertEqual(redirect_uri_matches(left, right), left == right)

    @given(st.integers(min_value=1, max_value=65535), path_text)
    def test_loopback_matches_any_port_with_same_path(self, port: int, path: str) -> None:
        """O21-4: for any port the loopback URI with the registered path matches."""
        registered = f"http://127.0.0.1/{path}"
        self.assertTrue(redirect_uri_matches(f"http://127.0.0.1:{port}/{path}", registered))

    @given(st.integers(min_value=1, max_value=65535), path_text, path_text)
    def test_loopback_with_other_path_never_matches(self, port: int, a: str, b: str) -> None:
        """ATK-2: a different loopback path never matches, whatever the port."""
        assume(a != b)
        self.assertFalse(
            redirect_uri_matches(f"http://127.0.0.1:{port}/{a}", f"http://127.0.0.1/{b}")
        )

    def test_missing_redirect_uri_allowed_with_one_registration(self) -> None:
        """RFC 6749 §3.1.2.3: without redirect_uri the single registered one is used."""
        self.assertEqual(find_redirect_uri(None, (REGISTERED,)), REGISTERED)
        self.assertIsNone(find_redirect_uri(None, (REGISTERED, LOOPBACK)))


class RegistrationTests(SynchronousTestCase):
    """Redirect URIs a client may register (MCP-8, MCP-13, O21-4)."""

    def test_https_is_accepted_for_web_and_native(self) -> None:
        """MCP-13: https redirect URIs are fine for every client."""
        for app_type in ("web", "native"):
            self.assertEqual(validate_registered_redirect_uri(REGISTERED, app_type), REGISTERED)

    def test_loopback_http_only_for_native(self) -> None:
        """MCP-8: loopback http is for native apps; web clients must use https."""
        self.assertEqual(validate_registered_redirect_uri(LOOPBACK, "native"), LOOPBACK)
        with self.assertRaises(InvalidRedirectUri):
            validate_registered_redirect_uri(LOOPBACK, "web")

    def test_non_loopback_http_is_rejected(self) -> None:
        """MCP-13: plain http off loopback is never allowed."""
        with self.assertRaises(InvalidRedirectUri):
            validate_registered_redirect_uri("http://app.example.test/cb", "native")

    def test_fragment_is_rejected(self) -> None:
        """O21-4: registered URIs must not contain a fragment."""
        with self.assertRaises(InvalidRedirectUri):
            validate_registered_redirect_uri("https://app.example.test/cb#x", "web")

    def test_relative_uri_is_rejected(self) -> None:
        """O21-4: registered URIs must be absolute."""
        for uri in ("/cb", "app.example.test/cb", "//app.example.test/cb", ""):
            with self.assertRaises(InvalidRedirectUri):
                validate_registered_redirect_uri(uri, "native")

    def test_dangerous_schemes_are_rejected(self) -> None:
        """MCP-13: script and local schemes are never redirect targets."""
        for uri in ("javascript:alert(1)", "data:text/html,x", "file:///etc/passwd"):
            with self.assertRaises(InvalidRedirectUri):
                validate_registered_redirect_uri(uri, "native")

    def test_private_use_scheme_only_for_native(self) -> None:
        """MCP-8: private-use schemes (RFC 8252 §7.1) are for native apps only."""
        uri = "com.example.app:/oauth/cb"
        self.assertEqual(validate_registered_redirect_uri(uri, "native"), uri)
        with self.assertRaises(InvalidRedirectUri):
            validate_registered_redirect_uri(uri, "web")

    def test_malformed_host_or_port_is_rejected(self) -> None:
        """O21-4: https URIs whose host or port does not parse are refused, not crashed on."""
        for uri in ("https://[/cb", "https://a.test:99999/cb", "https://a.test:x/cb"):
            with self.assertRaises(InvalidRedirectUri):
                validate_registered_redirect_uri(uri, "web")

    def test_wildcards_are_refused(self) -> None:
        """O21-4, MCP-13, ATK-2: matching is exact, so a wildcard could never match: refused."""
        for uri in (
            "https://*.example.test/cb",
            "https://app.example.test/*",
            "https://app.example.test/cb?next=*",
            "https://app.*.test/cb",
            "http://127.0.0.1/*",
            "com.example.app:/*",
        ):
            with self.assertRaises(InvalidRedirectUri, msg=uri):
                validate_registered_redirect_uri(uri, "native")

    def test_hosts_that_are_no_hostname_are_refused(self) -> None:
        """O21-4, ATK-2: an https host no browser could reach is refused, not stored."""
        for uri in (
            "https://app%2eexample.test/cb",
            "https://app_example.test/cb",
            "https://app..example.test/cb",
            "https://-app.example.test/cb",
            "https://app.example.test./cb",
            "https://" + "a" * 64 + ".test/cb",
            "https://[::1/cb",
        ):
            with self.assertRaises(InvalidRedirectUri, msg=uri):
                validate_registered_redirect_uri(uri, "web")

    def test_ip_literal_hosts_are_accepted(self) -> None:
        """O21-4: https on an IP literal is a matchable host."""
        for uri in ("https://192.0.2.10/cb", "https://[2001:db8::1]:8443/cb"):
            self.assertEqual(validate_registered_redirect_uri(uri, "web"), uri)

    def test_userinfo_is_rejected(self) -> None:
        """BCP-1: userinfo in a redirect URI is a phishing device."""
        with self.assertRaises(InvalidRedirectUri):
            validate_registered_redirect_uri("https://good.test@evil.test/cb", "web")

    def test_application_type_is_inferred_from_uris(self) -> None:
        """MCP-8: clients without application_type get the one their URIs imply."""
        self.assertEqual(infer_application_type([LOOPBACK]), "native")
        self.assertEqual(infer_application_type([REGISTERED]), "web")


class ReturnUrlTests(SynchronousTestCase):
    """The login return parameter (``rd``/``next``) never becomes an open redirect (ATK-1)."""

    def test_local_paths_are_kept(self) -> None:
        """ATK-1: a plain path on this host is returned unchanged."""
        self.assertEqual(safe_return_url("/dashboard?x=1"), "/dashboard?x=1")

    def test_open_redirect_payloads_fall_back_to_default(self) -> None:
        """ATK-1: every known open-redirect payload is replaced by the default."""
        for payload in (
            "https://evil.test/",
            "//evil.test",
            "/\\evil.test",
            "\\/evil.test",
            "/%09/evil.test",
            "/\t/evil.test",
            "/\n/evil.test",
            "/\r/evil.test",
            "%2F%2Fevil.test",
            "/%2F/evil.test",
            "/%5Cevil.test",
            "https:evil.test",
            "https:/evil.test",
            "https://good.example.test@evil.test/",
            "https://g\u043e\u043ed.example.test/",  # Cyrillic o: an IDN lookalike
            "https://xn--gd-7cda.example.test/",
            "javascript:alert(1)",
            " /evil",
            "",
        ):
            self.assertEqual(
                safe_return_url(payload, allowed_origins=("https://good.example.test",)),
                "/",
                payload,
            )

    def test_encoded_text_in_local_paths_is_kept(self) -> None:
        """ATK-1: percent-encoded spaces or non-ASCII in a local path are harmless."""
        self.assertEqual(safe_return_url("/search?q=a%20b%C3%A9"), "/search?q=a%20b%C3%A9")

    def test_allowed_origin_is_kept(self) -> None:
        """ATK-1: an absolute URL on an allowed origin is returned."""
        url = "https://good.example.test/app"
        self.assertEqual(safe_return_url(url, allowed_origins=("https://good.example.test",)), url)

    def test_other_port_of_allowed_host_is_refused(self) -> None:
        """ATK-1: the origin includes the port."""
        self.assertEqual(
            safe_return_url(
                "https://good.example.test:8443/", allowed_origins=("https://good.example.test",)
            ),
            "/",
        )

    @given(st.text(max_size=60))
    def test_result_is_always_local_or_default(self, text: str) -> None:
        """ATK-1: without allowed origins, the result is a single-slash local path."""
        result = safe_return_url(text, default="/")
        self.assertTrue(result.startswith("/"))
        self.assertFalse(result.startswith("//"))
        self.assertNotIn("\\", result)

    @given(st.text(max_size=60))
    def test_absolute_results_stay_on_allowed_origin(self, text: str) -> None:
        """ATK-1: whatever the input, the browser goes to a local path or the allowed origin."""
        origin = "https://good.example.test"
        for candidate in (text, origin + text, origin + "/" + text):
            result = safe_return_url(candidate, allowed_origins=(origin,), default="/")
            self.assertTrue(
                (result.startswith("/") and not result.startswith("//"))
                or urlsplit(result).hostname == "good.example.test",
                result,
            )
            self.assertNotIn("@", urlsplit(result).netloc)


class RegistrationPropertyTests(SynchronousTestCase):
    """Properties of every URI the registration check accepts (O21-4, MCP-13)."""

    @given(st.text(max_size=80), st.sampled_from(["native", "web"]))
    def test_accepted_uris_are_absolute_fragment_free_and_safe(
        self, text: str, app_type: str
    ) -> None:
        """O21-4, MCP-13: accepted URIs have no fragment and are https, loopback or app schemes."""
        for candidate in (text, "https://" + text, "http://127.0.0.1" + text):
            try:
                uri = validate_registered_redirect_uri(candidate, app_type)
            except InvalidRedirectUri:
                continue
            self.assertNotIn("#", uri)
            scheme = uri.partition(":")[0]
            if scheme == "http":
                self.assertEqual(app_type, "native")
                self.assertTrue(
                    uri.startswith(("http://127.0.0.1", "http://localhost", "http://[::1]"))
                )
            elif scheme != "https":
                self.assertEqual(app_type, "native")
                self.assertNotIn(scheme, ("javascript", "data", "file"))
