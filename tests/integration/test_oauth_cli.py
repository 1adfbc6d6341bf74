"""``oauthproxyctl oauth …`` as real commands against a real daemon (embedded redis-server)."""

from __future__ import annotations

from twisted.trial.unittest import TestCase

from tests.cli.test_auth_token import started


class OAuthCommandTests(TestCase):
    """The OAuth admin commands end to end."""

    async def test_metrics_and_empty_lists(self) -> None:
        """``oauth metrics`` counts nothing yet; ``oauth clients`` lists no client."""
        daemon = await started(self)
        metrics = await daemon.json("oauth", "metrics")
        self.assertEqual(metrics["clients"], {"static": 0, "dcr": 0, "cimd": 0})
        self.assertEqual(metrics["access_tokens_live"], 0)
        self.assertEqual(await daemon.json("oauth", "clients", "list"), [])
        self.assertEqual(await daemon.json("oauth", "sessions", "list", "--user", "alice"), [])
        self.assertEqual(await daemon.json("oauth", "tokens", "list"), [])
        revoked = await daemon.json("oauth", "revoke", "--user", "alice")
        self.assertEqual(revoked, {"sessions": 0, "access_tokens": 0})
        _, err, code = await daemon.run("oauth", "revoke")
        self.assertEqual(code, 2, err)
        _, err, code = await daemon.run("oauth", "clients", "show", "nope")
        self.assertEqual(code, 1)
        self.assertIn("nope", err)

    async def test_create_client_then_list_it(self) -> None:
        """``oauth clients create`` pre-registers a client that ``oauth clients list`` lists."""
        daemon = await started(self)
        created = await daemon.json(
            "oauth", "clients", "create", "CI",
            "--redirect-uri", "https://ci.example.com/cb", "--confidential",
        )  # fmt: skip
        self.assertTrue(created["client_secret"])
        listed = await daemon.json("oauth", "clients", "list", "--source", "static")
        self.assertEqual([c["client_id"] for c in listed], [created["client_id"]])

    async def test_initial_token_is_shown_once_then_listed_without_it(self) -> None:
        """ATK-37: ``oauth initial-tokens create`` prints the token once; the list never."""
        daemon = await started(self)
        created = await daemon.json(
            "oauth", "initial-tokens", "create", "ci", "--max-uses", "3", "--expires-in", "3600"
        )
        self.assertTrue(created["token"].startswith("oit_"))
        listed = await daemon.json("oauth", "initial-tokens", "list")
        self.assertEqual([(t["name"], t["max_uses"], t["uses"]) for t in listed], [("ci", 3, 0)])
        self.assertNotIn(created["token"], str(listed))
        _, err, code = await daemon.run("oauth", "initial-tokens", "create", "ci")
        self.assertEqual(code, 1, err)
        _, err, code = await daemon.run("oauth", "initial-tokens", "delete")
        self.assertEqual(code, 2, err)
        await daemon.json("oauth", "initial-tokens", "delete", "ci")
        self.assertEqual(await daemon.json("oauth", "initial-tokens", "list"), [])
