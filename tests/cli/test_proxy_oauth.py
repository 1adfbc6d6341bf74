"""``oauthproxyctl proxy auth-enable|oauth-server|resource|github-oauth``.

The request bodies are checked from the parsed command lines (no daemon); the
commands are then run for real against a daemon with its embedded redis-server.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from twisted.trial.unittest import SynchronousTestCase, TestCase

from oauthproxy.cli.context import CliError
from oauthproxy.cli.main import build_parser
from oauthproxy.cli.proxy_oauth import auth_body, github_body, resource_body, server_body
from tests.cli.test_proxy_route_service import running
from tests.support.daemon import OAUTH_ON

HOST = "svc.example.com"


def parsed(*argv: str) -> Any:
    """The namespace of ``oauthproxyctl ARGV``."""
    return build_parser().parse_args(list(argv))


class BodyTests(SynchronousTestCase):
    """What each ``set`` command sends."""

    def test_auth_enable_sends_oauth_with_allowlist_and_scopes(self) -> None:
        """The seed's proxy-auth-enable: oauth through AUTH_HOST, mode, users, scopes."""
        args = parsed("proxy", "auth-enable", HOST, "auth.example.com", "redirect",
                      "--users", "alice,org:acme", "--scopes", "api:read,api:write")  # fmt: skip
        self.assertEqual(
            auth_body(args),
            {
                "auth_type": "oauth",
                "auth_proxy": "auth.example.com",
                "auth_mode": "redirect",
                "required_users": ["alice", "org:acme"],
                "required_scopes": ["api:read", "api:write"],
            },
        )

    def test_auth_enable_without_mode_leaves_it_alone(self) -> None:
        """MODE is optional: not sent, the stored (or default) mode stays."""
        self.assertNotIn("auth_mode", auth_body(parsed("proxy", "auth-enable", HOST, "a.test")))

    def test_oauth_server_set_sends_the_seed_settings(self) -> None:
        """Every option of the seed's proxy-oauth-server-set maps to its field."""
        args = parsed(
            "proxy", "oauth-server", "set", HOST, "--issuer", "https://auth.example.com",
            "--scopes", "read,write,admin", "--grant-types", "authorization_code,refresh_token",
            "--response-types", "code", "--auth-methods", "client_secret_post",
            "--claims", "sub,name", "--pkce-required", "--custom-metadata", '{"custom_field": 1}',
            "--override-defaults",
        )  # fmt: skip
        self.assertEqual(
            server_body(args),
            {
                "issuer": "https://auth.example.com",
                "scopes_supported": ["read", "write", "admin"],
                "grant_types_supported": ["authorization_code", "refresh_token"],
                "response_types_supported": ["code"],
                "token_endpoint_auth_methods_supported": ["client_secret_post"],
                "claims_supported": ["sub", "name"],
                "pkce_required": True,
                "custom_metadata": {"custom_field": 1},
                "override_defaults": True,
            },
        )

    def test_empty_values_send_null(self) -> None:
        """``''`` returns a list or the issuer to the server's default."""
        args = parsed("proxy", "oauth-server", "set", HOST, "--issuer", "", "--scopes", "")
        self.assertEqual(server_body(args), {"issuer": None, "scopes_supported": None})

    def test_custom_metadata_must_be_a_json_object(self) -> None:
        """Not JSON, or not an object: a usage error (exit 2) naming the option."""
        for text in ("{nope", "[1]"):
            args = parsed("proxy", "resource", "set", HOST, "--custom-metadata", text)
            with self.assertRaises(CliError) as caught:
                resource_body(args)
            self.assertEqual(caught.exception.exit_code, 2)
            self.assertIn("--custom-metadata", str(caught.exception))

    def test_resource_set_sends_the_options_given(self) -> None:
        """RFC 9728 settings: resource, scopes, documentation; '' clears a name."""
        args = parsed("proxy", "resource", "set", HOST, "--resource", f"https://{HOST}/mcp",
                      "--scopes", "tools", "--documentation", "https://docs.test",
                      "--name", "")  # fmt: skip
        self.assertEqual(
            resource_body(args),
            {
                "resource": f"https://{HOST}/mcp",
                "scopes_supported": ["tools"],
                "resource_documentation": "https://docs.test",
                "resource_name": None,
            },
        )

    def test_github_oauth_secret_is_optional(self) -> None:
        """Only the client id: the stored secret stays."""
        args = parsed("proxy", "github-oauth", "set", HOST, "Iv1.abc")
        self.assertEqual(github_body(args), {"client_id": "Iv1.abc"})

    def test_both_secret_sources_are_a_usage_error(self) -> None:
        """``--client-secret`` and ``--client-secret-stdin`` together: exit 2."""
        args = parsed("proxy", "github-oauth", "set", HOST, "id", "--client-secret", "s",
                      "--client-secret-stdin")  # fmt: skip
        with self.assertRaises(CliError) as caught:
            github_body(args)
        self.assertEqual(caught.exception.exit_code, 2)


class DaemonTests(TestCase):
    """The commands against a real daemon."""

    timeout = 90

    async def test_auth_enable_and_disable(self) -> None:
        """auth-enable protects the proxy (org entries too); auth-disable opens it."""
        _, ctl = await running(self, OAUTH_ON)
        await ctl.ok("proxy", "create", HOST, "http://127.0.0.1:8080")
        shown = await ctl.json("proxy", "auth-enable", HOST, "auth.example.com", "redirect",
                               "--users", "alice,org:acme,team:acme/ops")  # fmt: skip
        self.assertEqual(shown["auth"]["auth_type"], "oauth")
        self.assertEqual(shown["auth"]["required_users"], ["alice", "org:acme", "team:acme/ops"])
        out = await ctl.ok("proxy", "auth-disable", HOST)
        self.assertEqual(out, f"cleared auth of {HOST}\n")
        self.assertIsNone((await ctl.json("proxy", "show", HOST))["auth"])

    async def test_oauth_server_and_resource_round_trip(self) -> None:
        """set, show and clear for both documents; a bad issuer is one line naming it."""
        _, ctl = await running(self)
        await ctl.ok("proxy", "create", HOST, "http://127.0.0.1:8080")
        await ctl.ok("proxy", "oauth-server", "set", HOST, "--issuer", "https://auth.example.com",
                     "--scopes", "read,write", "--custom-metadata", '{"x": 1}')  # fmt: skip
        shown = await ctl.json("proxy", "oauth-server", "show", HOST)
        self.assertEqual(shown["oauth_server"]["scopes_supported"], ["read", "write"])
        self.assertEqual(shown["oauth_server"]["custom_metadata"], {"x": 1})
        line = await ctl.fails("proxy", "oauth-server", "set", HOST, "--issuer", "http://x.test")
        self.assertIn("issuer must be", line)
        await ctl.ok("proxy", "resource", "set", HOST, "--resource", f"https://{HOST}/mcp")
        resource = await ctl.json("proxy", "resource", "show", HOST)
        self.assertEqual(resource["resource"]["resource"], f"https://{HOST}/mcp")
        for leaf in ("oauth-server", "resource"):
            await ctl.ok("proxy", leaf, "clear", HOST)
        cleared: Sequence[Any] = (
            (await ctl.json("proxy", "oauth-server", "show", HOST))["oauth_server"],
            (await ctl.json("proxy", "resource", "show", HOST))["resource"],
        )
        self.assertEqual(list(cleared), [None, None])

    async def test_github_secret_from_stdin_is_never_printed(self) -> None:
        """The secret goes in through stdin; set and show print has_secret only."""
        _, ctl = await running(self)
        await ctl.ok("proxy", "create", HOST, "http://127.0.0.1:8080")
        out, code = await ctl.shell(
            f"printf 'very-secret\\n' | oauthproxyctl proxy github-oauth set {HOST} Iv1.abc "
            "--client-secret-stdin"
        )
        self.assertEqual(code, 0)
        self.assertNotIn("very-secret", out)
        self.assertRegex(out, r"has_secret\s+yes")
        shown = await ctl.json("proxy", "github-oauth", "show", HOST)
        self.assertEqual(shown, {"hostname": HOST, "client_id": "Iv1.abc", "has_secret": True})
        await ctl.ok("proxy", "github-oauth", "clear", HOST)
        self.assertFalse((await ctl.json("proxy", "github-oauth", "show", HOST))["has_secret"])
