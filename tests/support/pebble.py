"""A real Pebble ACME CA (with pebble-challtestsrv as its DNS) for integration tests.

:func:`start_pebble` writes a throwaway CA and a ``localhost``/``127.0.0.1`` server
certificate for Pebble's own listeners, starts ``pebble-challtestsrv`` answering every
DNS name with 127.0.0.1, and Pebble validating HTTP-01 against ``http_port`` on
loopback, where the test serves :class:`~oauthproxy.acme.responder.ChallengeResource`.
Validation is real (no ``PEBBLE_VA_ALWAYS_VALID``).  Both processes are children of
the test, stopped by PID with :meth:`Pebble.stop`.

Start it in ``setUp`` (synchronous, about a third of a second; trial has no
``setUpClass``) and stop it with ``addCleanup(pebble.stop)``.  Orders are counted from
Pebble's log (:meth:`Pebble.order_count`).
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import socket
import ssl
import subprocess
import time
import urllib.request
from pathlib import Path

from attrs import define, field
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.support.ports import free_port
from tests.support.processes import end_process

#: seconds a process may take to become ready
START_TIMEOUT = 15.0


def _write_tls_files(directory: Path) -> Path:
    """A CA (``ca.pem``) and a localhost server cert/key signed by it; the CA's path."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "oauthproxy test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                ]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    (directory / "ca.pem").write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    (directory / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (directory / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return directory / "ca.pem"


def _wait_for_tcp(port: int, process: subprocess.Popen[bytes], what: str) -> None:
    """Wait until ``port`` accepts connections; fail if ``process`` died or time ran out."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode} while starting")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on port {port} within {START_TIMEOUT} s")


@define
class Pebble:
    """A running Pebble + challtestsrv pair (see the module docstring)."""

    workdir: Path
    #: the ACME directory URL
    directory_url: str
    #: the CA trusted for Pebble's own HTTPS (ACME_CA_BUNDLE)
    ca_bundle: str
    #: Pebble's management API (HTTPS, same CA)
    management_url: str
    #: the loopback port Pebble's VA sends HTTP-01 requests to
    http_port: int
    log_path: Path
    _processes: list[subprocess.Popen[bytes]] = field(factory=list)

    def root_pem(self) -> str:
        """The root that signs the certificates Pebble issues (new at every start)."""
        return self._management_get("/roots/0")

    def intermediate_pem(self) -> str:
        """The intermediate that signs the leaf certificates."""
        return self._management_get("/intermediates/0")

    def _management_get(self, path: str) -> str:
        context = ssl.create_default_context(cafile=self.ca_bundle)
        with urllib.request.urlopen(self.management_url + path, context=context, timeout=5) as r:
            body: bytes = r.read()
            return body.decode("ascii")

    def order_count(self) -> int:
        """How many orders Pebble has created since it started (counted in its log)."""
        return self.log_path.read_text(errors="replace").count("Added order")

    def log_text(self) -> str:
        """Pebble's log so far (for failure messages)."""
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        """Stop both processes by PID."""
        while self._processes:
            end_process(self._processes.pop(), 5)


def start_pebble(
    workdir: Path,
    http_port: int,
    validity_seconds: int = 3600,
    nonce_reject_percent: int = 0,
) -> Pebble:
    """Start challtestsrv and Pebble in ``workdir``; the running :class:`Pebble`.

    ``http_port`` is where the test will serve HTTP-01 answers on 127.0.0.1;
    ``validity_seconds`` is Pebble's ``certificateValidityPeriod``;
    ``nonce_reject_percent`` is ``PEBBLE_WFE_NONCEREJECT``.  A missing binary raises
    (tests fail, they are never skipped).
    """
    workdir.mkdir(parents=True, exist_ok=True)
    ca_bundle = _write_tls_files(workdir)
    dns, cts_management, acme, management, tls = (free_port() for _ in range(5))
    pebble = Pebble(
        workdir=workdir,
        directory_url=f"https://127.0.0.1:{acme}/dir",
        ca_bundle=str(ca_bundle),
        management_url=f"https://127.0.0.1:{management}",
        http_port=http_port,
        log_path=workdir / "pebble.log",
    )
    try:
        with open(workdir / "challtestsrv.log", "wb") as cts_log:
            challtestsrv = subprocess.Popen(
                [
                    "pebble-challtestsrv",
                    "-dns01",
                    f"127.0.0.1:{dns}",
                    "-http01",
                    "",
                    "-https01",
                    "",
                    "-tlsalpn01",
                    "",
                    "-management",
                    f"127.0.0.1:{cts_management}",
                    "-defaultIPv4",
                    "127.0.0.1",
                    "-defaultIPv6",
                    "",
                ],
                stdout=cts_log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        pebble._processes.append(challtestsrv)
        _wait_for_tcp(cts_management, challtestsrv, "pebble-challtestsrv")
        config = {
            "pebble": {
                "listenAddress": f"127.0.0.1:{acme}",
                "managementListenAddress": f"127.0.0.1:{management}",
                "certificate": str(workdir / "cert.pem"),
                "privateKey": str(workdir / "key.pem"),
                "httpPort": http_port,
                "tlsPort": tls,
                "ocspResponderURL": "",
                "externalAccountBindingRequired": False,
                "certificateValidityPeriod": validity_seconds,
            }
        }
        (workdir / "pebble.json").write_text(json.dumps(config))
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "PEBBLE_VA_NOSLEEP": "1",
            "PEBBLE_WFE_NONCEREJECT": str(nonce_reject_percent),
            "PEBBLE_AUTHZREUSE": "0",
        }
        with open(pebble.log_path, "wb") as log:
            process = subprocess.Popen(
                [
                    "pebble",
                    "-config",
                    str(workdir / "pebble.json"),
                    "-dnsserver",
                    f"127.0.0.1:{dns}",
                    "-strict=false",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
            )
        pebble._processes.append(process)
        _wait_for_tcp(acme, process, "pebble")
        _wait_for_tcp(management, process, "pebble management")
    except BaseException:
        pebble.stop()
        raise
    return pebble
