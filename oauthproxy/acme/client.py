"""The ACME protocol, via the synchronous ``acme`` library, kept off the reactor thread.

The ``_thd_*`` functions block (HTTP with ``requests``, key generation, polling) and
run only in the issuing service's dedicated :class:`~twisted.python.threadpool.ThreadPool`.
:class:`ThreadedOrderClient` is the reactor-side face of them (:class:`IOrderClient`):
each method is one ``deferToThreadPool`` call, so the service publishes challenge
tokens to the shared challenge store on the reactor thread *between* steps and no
object is used by two threads at once.

Errors from the library are turned into :class:`AcmeOrderError` with a readable
reason at this boundary.

An order can be resumed (:attr:`OrderRequest.resume_url`): the library has no call for
it, but an order is just a POST-as-GET of its URL (RFC 8555 §7.1.3) and its
authorizations; one that is still ``pending`` or ``ready`` is finished with a CSR from
a new key (the CSR is only sent at finalization), anything else means a new order.
"""

from __future__ import annotations

import datetime
import threading
from typing import Any, Literal

import josepy
import requests
from acme import challenges, crypto_util, messages
from acme import client as acme_client
from acme import errors as acme_errors
from attrs import frozen
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorFromThreads, IReactorTime
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool
from zope.interface import Interface, implementer

from oauthproxy.errors import OAuthProxyError

KeyKind = Literal["account", "certificate"]

#: POSTs rejected with badNonce are retried this often (the library itself retries once)
BAD_NONCE_RETRIES = 10
#: seconds between polls of a pending authorization
AUTHORIZATION_POLL_INTERVAL = 0.25
#: seconds any single HTTP request to the CA may take
NETWORK_TIMEOUT = 30


class AcmeOrderError(OAuthProxyError):
    """The ACME order failed."""

    code = "acme_order_failed"

    def __init__(self, detail: str, failed_identifiers: tuple[str, ...] = ()) -> None:
        super().__init__(detail)
        #: identifiers whose authorization failed (they count against the CA's limit)
        self.failed_identifiers = failed_identifiers


class OrderCancelled(AcmeOrderError):
    """The order was abandoned (the daemon is stopping); it is not a failure of the order."""

    code = "acme_order_cancelled"


@frozen
class OrderRequest:
    """Everything needed to order one certificate."""

    directory_url: str
    domains: tuple[str, ...]
    #: contact for the account; "" = none
    email: str
    account_key_pem: str
    #: the certificate's private key (the CSR is made from it)
    private_key_pem: str
    #: an order placed earlier (by a daemon that died mid-order) to resume if the CA
    #: still has it pending or ready and the account that placed it is ours
    resume_url: str | None = None
    resume_account_url: str | None = None


@frozen
class HttpChallenge:
    """One HTTP-01 answer to publish at ``/.well-known/acme-challenge/<token>``."""

    identifier: str
    token: str
    key_authorization: str


@frozen
class PendingOrder:
    """An order created at the CA whose challenges must be published before completion."""

    challenges: tuple[HttpChallenge, ...]
    #: opaque state for :meth:`IOrderClient.complete` (the library's client and order)
    state: Any
    #: the order's URL at the CA and the URL of the account that placed it
    order_url: str = ""
    account_url: str = ""
    #: whether this is :attr:`OrderRequest.resume_url`, resumed rather than placed anew
    resumed: bool = False


class IOrderClient(Interface):
    """The ACME operations the issuing service needs, as Deferreds."""

    def generate_key(kind: KeyKind) -> Deferred[str]:
        """A new private key PEM for an ACME account or for a certificate."""

    def begin(request: OrderRequest) -> Deferred[PendingOrder]:
        """Register (or find) the account, create the order and collect its HTTP-01 challenges.

        Resumes ``request.resume_url`` instead of creating an order when the CA still
        has it pending or ready for the same names and account; a new order otherwise.
        """

    def complete(order: PendingOrder, timeout: float) -> Deferred[str]:
        """Answer the challenges, wait for validation, finalize; the full chain PEM.

        Gives up after ``timeout`` seconds; failures errback with :class:`AcmeOrderError`,
        :class:`OrderCancelled` after :meth:`cancel_all`.
        """

    def cancel_all() -> None:
        """Abandon the orders in flight (at shutdown), so that no thread keeps polling."""


class _PatientNetwork(acme_client.ClientNetwork):
    """A ClientNetwork that retries badNonce rejections more than once.

    A request rejected for its nonce was not processed by the CA, so resending it
    with a fresh nonce is safe; the library gives up after one retry, which fails
    orders against CAs that reject many nonces (Pebble's ``PEBBLE_WFE_NONCEREJECT``).
    """

    def post(self, *args: Any, **kwargs: Any) -> requests.Response:
        """POST, retrying up to :data:`BAD_NONCE_RETRIES` times on badNonce."""
        for _ in range(BAD_NONCE_RETRIES):
            try:
                return super().post(*args, **kwargs)
            except messages.Error as e:
                if e.code != "badNonce":
                    raise
        return super().post(*args, **kwargs)


def _thd_generate_key(kind: KeyKind) -> str:
    """A PEM private key: RSA-2048 for accounts (RS256), P-256 for certificates."""
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
    if kind == "account":
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    else:
        key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")


def _readable(error: BaseException) -> str:
    """A one-line reason for a library or network error."""
    if isinstance(error, messages.Error):
        return f"{error.typ.rsplit(':', 1)[-1]}: {error.detail or error.title or error.typ}"
    if isinstance(error, acme_errors.IssuanceError):
        return f"issuance refused: {_readable(error.error)}"
    if isinstance(error, requests.exceptions.SSLError):
        return f"TLS error talking to the ACME server: {error}"
    if isinstance(error, requests.exceptions.RequestException):
        return f"cannot reach the ACME server: {error}"
    return f"{type(error).__name__}: {error}".rstrip(": ")


def _thd_begin(request: OrderRequest, ca_bundle: str | None) -> PendingOrder:
    """Account, order (resumed or new) and HTTP-01 challenges for ``request`` (blocking)."""
    try:
        account_key = josepy.jwk.JWKRSA.load(request.account_key_pem.encode("ascii"))
        net = _PatientNetwork(
            account_key,
            user_agent="oauthproxy",
            verify_ssl=ca_bundle if ca_bundle else True,  # type: ignore[arg-type]
            timeout=NETWORK_TIMEOUT,
        )
        client = acme_client.ClientV2(
            acme_client.ClientV2.get_directory(request.directory_url, net), net
        )
        contact = (f"mailto:{request.email}",) if request.email else ()
        registration = messages.NewRegistration(contact=contact, terms_of_service_agreed=True)
        try:
            account_url = str(client.new_account(registration).uri)
        except acme_errors.ConflictError as existing:
            # the key already has an account: use it (RFC 8555 §7.3.1)
            account_url = str(existing.location)
            net.account = messages.RegistrationResource(
                uri=account_url, body=messages.Registration()
            )
        csr = crypto_util.make_csr(request.private_key_pem.encode("ascii"), list(request.domains))
        order = None
        if request.resume_url and request.resume_account_url in (None, account_url):
            order = _thd_resumable(client, request.resume_url, request.domains, csr)
        resumed = order is not None
        if order is None:
            order = client.new_order(csr)
    except (acme_errors.Error, messages.Error, requests.exceptions.RequestException) as e:
        raise AcmeOrderError(f"cannot create the order: {_readable(e)}") from e
    todo = []
    found = []
    for authz in order.authorizations:
        identifier = authz.body.identifier.value
        if authz.body.status == messages.STATUS_VALID:
            continue
        http01 = [c for c in authz.body.challenges if isinstance(c.chall, challenges.HTTP01)]
        if not http01:
            raise AcmeOrderError(
                f"the CA offers no HTTP-01 challenge for {identifier}", (identifier,)
            )
        challenge = http01[0]
        response, validation = challenge.response_and_validation(account_key)
        if challenge.status in (None, messages.STATUS_PENDING):
            # a resumed order's challenge may be answered already (being validated):
            # its answer is published again, but it is not answered twice
            todo.append((identifier, challenge, response))
        found.append(HttpChallenge(identifier, challenge.chall.encode("token"), validation))
    return PendingOrder(
        tuple(found),
        (client, order, tuple(todo)),
        order_url=str(order.uri or ""),
        account_url=account_url,
        resumed=resumed,
    )


def _thd_resumable(
    client: acme_client.ClientV2, url: str, domains: tuple[str, ...], csr_pem: bytes
) -> messages.OrderResource | None:
    """The order at ``url`` if it can still be finished with ``csr_pem``; None if not (blocking).

    It can when the CA still knows it (Pebble and Let's Encrypt keep orders for days),
    it belongs to the current account, is ``pending`` or ``ready`` (not yet finalized:
    the key of a finalized order died with the daemon that placed it) and is for
    exactly ``domains``.  Any other answer means placing a new order.
    """
    new_nonce = client.directory["newNonce"]
    try:
        # POST-as-GET (RFC 8555 §6.3): the payload is empty, not "{}"
        response = client.net.post(url, None, new_nonce_url=new_nonce)
        body = messages.Order.from_json(response.json())
        if body.status not in (messages.STATUS_PENDING, messages.STATUS_READY):
            return None
        names = sorted(identifier.value for identifier in body.identifiers)
        if names != sorted(domains):
            return None
        authorizations = []
        for authz_url in body.authorizations:
            authz = client.net.post(authz_url, None, new_nonce_url=new_nonce)
            authorizations.append(
                messages.AuthorizationResource(
                    body=messages.Authorization.from_json(authz.json()), uri=authz_url
                )
            )
    except (
        acme_errors.Error,
        messages.Error,
        requests.exceptions.RequestException,
        josepy.errors.DeserializationError,
        ValueError,
    ):
        # gone, not ours, unreadable: a new order does the job
        return None
    return messages.OrderResource(
        body=body, uri=url, authorizations=authorizations, csr_pem=csr_pem
    )


def _thd_complete(
    order: PendingOrder, deadline: float, timeout: float, cancelled: threading.Event
) -> str:
    """Answer, poll until valid, finalize and download the full chain (blocking).

    ``deadline`` (POSIX seconds, read from the caller's clock) bounds the library's
    finalization polling; ``timeout`` bounds the number of authorization polls.
    Setting ``cancelled`` ends the polling at once with :class:`OrderCancelled`.
    """
    client, orderr, todo = order.state
    try:
        for _identifier, challenge, response in todo:
            client.answer_challenge(challenge, response)
        polls = max(int(timeout / AUTHORIZATION_POLL_INTERVAL), 1)
        authorizations = []
        for authz in orderr.authorizations:
            for _ in range(polls):
                authz, _response = client.poll(authz)
                if authz.body.status != messages.STATUS_PENDING:
                    break
                if cancelled.wait(AUTHORIZATION_POLL_INTERVAL):
                    raise OrderCancelled("the order was abandoned at shutdown")
            authorizations.append(authz)
        _raise_for_authorizations(authorizations)
        if cancelled.is_set():
            raise OrderCancelled("the order was abandoned at shutdown")
        finished = client.finalize_order(
            orderr.update(authorizations=authorizations),
            datetime.datetime.fromtimestamp(deadline),
        )
    except AcmeOrderError:
        raise
    except acme_errors.TimeoutError as e:
        raise AcmeOrderError("timed out waiting for the CA to issue the certificate") from e
    except (acme_errors.Error, messages.Error, requests.exceptions.RequestException) as e:
        raise AcmeOrderError(f"order failed: {_readable(e)}") from e
    return str(finished.fullchain_pem)


def _raise_for_authorizations(authorizations: list[messages.AuthorizationResource]) -> None:
    """Raise :class:`AcmeOrderError` naming every authorization that is not valid."""
    reasons = []
    failed = []
    for authz in authorizations:
        status = authz.body.status
        if status == messages.STATUS_VALID:
            continue
        identifier = authz.body.identifier.value
        failed.append(identifier)
        problems = [_readable(c.error) for c in authz.body.challenges if c.error is not None]
        if status == messages.STATUS_PENDING:
            problems.append("still pending at the deadline")
        reasons.append(f"{identifier}: {'; '.join(problems) or status.name}")
    if failed:
        raise AcmeOrderError("validation failed for " + ", ".join(reasons), tuple(failed))


@implementer(IOrderClient)
class ThreadedOrderClient:
    """:class:`IOrderClient` running the ``_thd_*`` steps in a dedicated thread pool."""

    def __init__(
        self,
        reactor: IReactorFromThreads,
        clock: IReactorTime,
        pool: ThreadPool,
        ca_bundle: str | None = None,
    ) -> None:
        """``pool`` belongs to the caller, who starts and stops it."""
        self._reactor = reactor
        self._clock = clock
        self._pool = pool
        self._ca_bundle = ca_bundle
        self._cancelled = threading.Event()

    def generate_key(self, kind: KeyKind) -> Deferred[str]:
        """See :meth:`IOrderClient.generate_key`."""
        return deferToThreadPool(self._reactor, self._pool, _thd_generate_key, kind)

    def begin(self, request: OrderRequest) -> Deferred[PendingOrder]:
        """See :meth:`IOrderClient.begin`."""
        return deferToThreadPool(self._reactor, self._pool, _thd_begin, request, self._ca_bundle)

    def complete(self, order: PendingOrder, timeout: float) -> Deferred[str]:
        """See :meth:`IOrderClient.complete`."""
        deadline = self._clock.seconds() + timeout
        return deferToThreadPool(
            self._reactor, self._pool, _thd_complete, order, deadline, timeout, self._cancelled
        )

    def cancel_all(self) -> None:
        """See :meth:`IOrderClient.cancel_all` (the client stays cancelled)."""
        self._cancelled.set()
