"""Configure a freshly started benchmark daemon: one proxy for ``127.0.0.1``.

Run by ``bench/run_gateway.sh`` next to the daemon.  Once the admin API
answers ``/health`` it

1. issues an admin token through the daemon's store (as ``oauthproxyctl
   token-admin`` does), since the token printed at first start went to the log;
2. with ``--cert``/``--key``, stores that pair as the ready certificate
   ``bench`` for ``127.0.0.1`` (the admin API orders certificates, it does not
   take uploads);
3. creates the proxy ``127.0.0.1`` -> ``--origin`` through ``POST /proxy/targets/``,
   serving plain HTTP (``--scheme http``) or HTTPS with the ``bench``
   certificate (``--scheme https``).

Exits 0 once the proxy exists, 1 when the daemon does not answer in time.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from typing import Any

import treq
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from twisted.internet import defer, error, task
from twisted.web.client import HTTPConnectionPool
from twisted.web.http_headers import Headers

from oauthproxy import bootstrap
from oauthproxy.config import Config
from oauthproxy.errors import Conflict
from oauthproxy.model import Certificate

HOSTNAME = "127.0.0.1"
CERT_NAME = "bench"


def certificate_record(cert_pem: str, key_pem: str, now: float) -> Certificate:
    """A ready :class:`Certificate` record for ``127.0.0.1`` from a PEM pair."""
    leaf = x509.load_pem_x509_certificate(cert_pem.encode("ascii"))
    return Certificate(
        cert_name=CERT_NAME,
        domains=(HOSTNAME,),
        status="ready",
        fullchain_pem=cert_pem,
        private_key_pem=key_pem,
        not_before=leaf.not_valid_before_utc.timestamp(),
        not_after=leaf.not_valid_after_utc.timestamp(),
        fingerprint_sha256=hashlib.sha256(
            leaf.public_bytes(serialization.Encoding.DER)
        ).hexdigest(),
        issuer=leaf.issuer.rfc4514_string(),
        created_at=now,
        updated_at=now,
    )


async def wait_for_health(reactor: Any, api: str, pool: HTTPConnectionPool, timeout: float) -> bool:
    """Poll ``GET /health`` until it answers 200 (at most ``timeout`` seconds)."""
    deadline = reactor.seconds() + timeout
    while reactor.seconds() < deadline:
        try:
            response = await treq.get(api + "/health", pool=pool, timeout=2)
            await treq.content(response)
            if response.code == 200:
                return True
        except (error.ConnectError, error.TimeoutError, OSError):
            pass  # not listening yet
        except Exception as e:  # treq wraps transport errors (ResponseNeverReceived & co.)
            sys.stderr.write(f"configure_proxy: waiting for /health: {e!r}\n")
        await task.deferLater(reactor, 0.1, lambda: None)
    return False


async def admin_token(reactor: Any, args: argparse.Namespace, store_certificate: bool) -> str:
    """A fresh admin token from the daemon's store (and the ``bench`` certificate stored)."""
    storage = bootstrap.open_storage(Config(data_dir=args.data_dir), reactor)
    try:
        token: str = await bootstrap.rotate_admin_token(storage.tokens, reactor)
        if store_certificate and args.cert and args.key:
            with open(args.cert) as c, open(args.key) as k:
                record = certificate_record(c.read(), k.read(), reactor.seconds())
            try:
                await storage.certificates.create(record)
            except Conflict:
                await storage.certificates.update(record)
        return token
    finally:
        await storage.close()


async def configure(reactor: Any, args: argparse.Namespace) -> int:
    """Wait for the daemon, then store the certificate and create the proxy."""
    pool = HTTPConnectionPool(reactor, persistent=False)  # type: ignore[no-untyped-call]
    try:
        if not await wait_for_health(reactor, args.api, pool, args.timeout):
            sys.stderr.write(f"configure_proxy: {args.api}/health never answered\n")
            return 1
        https = args.scheme == "https"
        proxy: dict[str, object] = {
            "hostname": HOSTNAME,
            "target_url": args.origin,
            "enable_http": not https,
            "enable_https": https,
        }
        if https and args.cert and args.key:
            proxy["cert_name"] = CERT_NAME
        for _ in range(10):
            # a daemon on its first start makes its own admin token once it is up, which
            # can replace the one issued here: then issue another and try again
            token = await admin_token(reactor, args, store_certificate=https)
            response = await treq.post(
                args.api + "/proxy/targets/",
                data=json.dumps(proxy).encode(),
                headers=Headers(
                    {"Authorization": [f"Bearer {token}"], "Content-Type": ["application/json"]}
                ),
                pool=pool,
                timeout=10,
            )
            body = await treq.content(response)
            if response.code != 401:
                break
            await task.deferLater(reactor, 0.5, lambda: None)
        if response.code != 201:
            sys.stderr.write(f"configure_proxy: {response.code} {body.decode(errors='replace')}\n")
            return 1
        print(f"configure_proxy: {HOSTNAME} -> {args.origin} over {args.scheme}", flush=True)
        return 0
    finally:
        await pool.closeCachedConnections()  # type: ignore[no-untyped-call]


def main() -> None:
    """Parse the arguments and run :func:`configure` on the reactor."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--api", required=True, help="admin API base URL")
    parser.add_argument("--data-dir", required=True, help="the daemon's data directory")
    parser.add_argument("--origin", required=True, help="the proxy's target URL")
    parser.add_argument("--scheme", choices=("http", "https"), default="http")
    parser.add_argument("--cert", help="PEM certificate for 127.0.0.1 (HTTPS)")
    parser.add_argument("--key", help="PEM private key of --cert")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for it")
    args = parser.parse_args()

    async def run(reactor: Any) -> None:
        code = await configure(reactor, args)
        if code:
            raise SystemExit(code)

    task.react(lambda reactor: defer.ensureDeferred(run(reactor)))


if __name__ == "__main__":
    main()
