"""Tests for the parts of :mod:`oauthproxy.acme.client` that need no CA (no sockets).

Whole orders run against Pebble in ``tests/integration/test_acme_pebble.py``.
"""

from __future__ import annotations

import threading
from types import SimpleNamespace
from typing import Any

import josepy
from acme import challenges, messages
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from twisted.trial.unittest import SynchronousTestCase

from oauthproxy.acme import client
from oauthproxy.acme.client import AcmeOrderError


def bad_nonce() -> messages.Error:
    """The error a CA sends for a rejected nonce."""
    return messages.Error(
        typ="urn:ietf:params:acme:error:badNonce", detail="JWS has an invalid anti-replay nonce"
    )


def authorization(name: str, status: messages.Status, error: messages.Error | None) -> Any:
    """An authorization resource for ``name`` with one HTTP-01 challenge."""
    challenge = messages.ChallengeBody(
        chall=challenges.HTTP01(token=b"x" * 16),
        status=messages.STATUS_INVALID if error else messages.STATUS_VALID,
        error=error,
    )
    body = messages.Authorization(
        identifier=messages.Identifier(typ=messages.IDENTIFIER_FQDN, value=name),
        challenges=[challenge],
        status=status,
    )
    return messages.AuthorizationResource(body=body, uri=f"https://ca/authz/{name}")


class PatientNetworkTests(SynchronousTestCase):
    """badNonce rejections are retried beyond the library's single retry."""

    def network(self, rejections: int) -> tuple[client._PatientNetwork, list[str]]:
        """A network whose first ``rejections`` POSTs fail with badNonce."""
        net = client._PatientNetwork(None)
        calls: list[str] = []

        def post_once(url: str, obj: Any, **kwargs: Any) -> Any:
            calls.append(url)
            if len(calls) <= rejections:
                raise bad_nonce()
            return "response"

        net._post_once = post_once  # type: ignore[method-assign]
        return net, calls

    def test_many_bad_nonces_are_retried(self) -> None:
        """Five rejections in a row still end in the response."""
        net, calls = self.network(5)
        self.assertEqual(net.post("https://ca/order", None), "response")
        self.assertEqual(len(calls), 6)

    def test_retries_are_bounded(self) -> None:
        """A CA that rejects every nonce gets a bounded number of attempts, then the error."""
        net, calls = self.network(10_000)
        error = self.assertRaises(messages.Error, net.post, "https://ca/order", None)
        self.assertEqual(error.code, "badNonce")
        self.assertLessEqual(len(calls), 2 * (client.BAD_NONCE_RETRIES + 1))

    def test_other_errors_are_not_retried(self) -> None:
        """An error other than badNonce is raised at once."""
        net = client._PatientNetwork(None)
        calls: list[str] = []

        def post_once(url: str, obj: Any, **kwargs: Any) -> Any:
            calls.append(url)
            raise messages.Error(typ="urn:ietf:params:acme:error:rateLimited", detail="slow down")

        net._post_once = post_once  # type: ignore[method-assign]
        self.assertRaises(messages.Error, net.post, "https://ca/order", None)
        self.assertEqual(len(calls), 1)


class AuthorizationErrorTests(SynchronousTestCase):
    """Failed authorizations become one readable reason naming each identifier."""

    def test_invalid_authorization_names_identifier_and_problem(self) -> None:
        """The reason names the identifier and the CA's problem; only it counts as failed."""
        problem = messages.Error(
            typ="urn:ietf:params:acme:error:unauthorized", detail="returned 404"
        )
        authorizations = [
            authorization("ok.example", messages.STATUS_VALID, None),
            authorization("bad.example", messages.STATUS_INVALID, problem),
        ]
        error = self.assertRaises(AcmeOrderError, client._raise_for_authorizations, authorizations)
        self.assertEqual(
            error.detail, "validation failed for bad.example: unauthorized: returned 404"
        )
        self.assertEqual(error.failed_identifiers, ("bad.example",))

    def test_all_valid_raises_nothing(self) -> None:
        """Valid authorizations pass."""
        client._raise_for_authorizations([authorization("ok.example", messages.STATUS_VALID, None)])

    def test_pending_at_deadline_is_reported(self) -> None:
        """An authorization still pending when time ran out is a failure saying so."""
        error = self.assertRaises(
            AcmeOrderError,
            client._raise_for_authorizations,
            [authorization("slow.example", messages.STATUS_PENDING, None)],
        )
        self.assertIn("still pending", error.detail)


class KeyTests(SynchronousTestCase):
    """Keys made for accounts and certificates."""

    def test_account_key_is_rsa_and_certificate_key_is_p256(self) -> None:
        """Account keys load as josepy RSA keys; certificate keys are EC P-256 PEM."""
        account = client._thd_generate_key("account")
        josepy.jwk.JWKRSA.load(account.encode("ascii"))
        key = serialization.load_pem_private_key(
            client._thd_generate_key("certificate").encode("ascii"), None
        )
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        self.assertEqual(key.curve.name, "secp256r1")


class CancellationTests(SynchronousTestCase):
    """Orders waiting for the CA end promptly when the daemon stops."""

    def test_polling_stops_when_cancelled(self) -> None:
        """A pending authorization is not polled on once the cancel event is set."""
        polls: list[object] = []

        class PendingCA:
            """An ACME client whose authorization never leaves pending."""

            def answer_challenge(self, challenge: object, response: object) -> None:
                """Accept the answer."""

            def poll(self, authz: Any) -> tuple[Any, None]:
                """Still pending."""
                polls.append(authz)
                return authz, None

        authz = authorization("slow.example", messages.STATUS_PENDING, None)
        order = client.PendingOrder((), (PendingCA(), SimpleNamespace(authorizations=[authz]), ()))
        cancelled = threading.Event()
        cancelled.set()
        self.assertRaises(client.OrderCancelled, client._thd_complete, order, 0.0, 60.0, cancelled)
        self.assertEqual(len(polls), 1)


class _StoredOrderCA:
    """An ACME client whose CA answers POST-as-GET with stored JSON documents."""

    def __init__(self, documents: dict[str, Any]) -> None:
        self.directory = {"newNonce": "https://ca/nonce"}
        self.documents = documents
        self.posts: list[tuple[str, object]] = []
        self.net = SimpleNamespace(post=self.post)

    def post(self, url: str, payload: object, new_nonce_url: str) -> Any:
        """The document at ``url``; a 404 problem for unknown URLs."""
        self.posts.append((url, payload))
        if url not in self.documents:
            raise messages.Error(
                typ="urn:ietf:params:acme:error:malformed", detail="No order found"
            )
        document = self.documents[url]
        return SimpleNamespace(json=lambda: document)


class ResumableOrderTests(SynchronousTestCase):
    """Which stored orders a daemon resumes after its predecessor died mid-order."""

    order_url = "https://ca/my-order/1"

    def ca(self, status: str, names: tuple[str, ...] = ("a.example",)) -> _StoredOrderCA:
        """A CA holding one order for ``names`` in ``status`` with one pending authorization."""
        order = {
            "status": status,
            "identifiers": [{"type": "dns", "value": name} for name in names],
            "authorizations": ["https://ca/authz/1"],
            "finalize": "https://ca/finalize/1",
        }
        authz = {
            "identifier": {"type": "dns", "value": names[0]},
            "status": "pending",
            "challenges": [
                {
                    "type": "http-01",
                    "url": "https://ca/chal/1",
                    "token": "dG9rZW4tdG9rZW4tdG9rZW4",
                    "status": "processing",
                }
            ],
        }
        return _StoredOrderCA({self.order_url: order, "https://ca/authz/1": authz})

    def resumable(self, ca: _StoredOrderCA, names: tuple[str, ...] = ("a.example",)) -> Any:
        """What ``_thd_resumable`` makes of the stored order."""
        return client._thd_resumable(ca, self.order_url, names, b"csr")  # type: ignore[arg-type]

    def test_pending_order_for_the_same_names_is_resumed(self) -> None:
        """A pending order comes back with its URL, authorizations and the new CSR."""
        ca = self.ca("pending")
        order = self.resumable(ca)
        self.assertEqual((order.uri, order.csr_pem), (self.order_url, b"csr"))
        self.assertEqual([a.uri for a in order.authorizations], ["https://ca/authz/1"])
        self.assertEqual([payload for _, payload in ca.posts], [None, None], "POST-as-GET")

    def test_ready_order_is_resumed(self) -> None:
        """A validated order that was never finalized is resumed (only finalization is left)."""
        self.assertIsNotNone(self.resumable(self.ca("ready")))

    def test_finalized_or_invalid_orders_are_not_resumed(self) -> None:
        """A valid order's key died with the daemon; an invalid one cannot be finished."""
        for status in ("valid", "processing", "invalid"):
            self.assertIsNone(self.resumable(self.ca(status)), status)

    def test_order_for_other_names_is_not_resumed(self) -> None:
        """The certificate's names changed since: a new order is placed."""
        self.assertIsNone(self.resumable(self.ca("pending"), ("b.example",)))

    def test_order_unknown_to_the_ca_is_not_resumed(self) -> None:
        """A CA error (order expired, CA restarted) means a new order, not a failure."""
        self.assertIsNone(self.resumable(_StoredOrderCA({})))
