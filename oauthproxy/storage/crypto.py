"""Encryption of secrets at rest (certificate and ACME account private keys).

:class:`SecretBox` seals strings with AES-256-GCM under a 32-byte key that comes
from configuration (``OAUTHPROXY_SECRET_KEY``) or from ``<data_dir>/secret.key``.
A sealed value is text, so it fits in JSON::

    v1.<urlsafe-base64(nonce(12) || ciphertext || tag(16))>

The version prefix lets a later key rotation or algorithm change recognise old
values.  Sealing binds an optional ``context`` (e.g. the certificate name) as
associated data, so a sealed key copied onto another record does not open.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
import secrets

from attrs import evolve, field, frozen
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from oauthproxy.errors import ConfigError, OAuthProxyError
from oauthproxy.model import Certificate

KEY_BYTES = 32
NONCE_BYTES = 12
VERSION = "v1"
KEY_FILE_NAME = "secret.key"
KEY_FIELD = "OAUTHPROXY_SECRET_KEY"


class DecryptionError(OAuthProxyError):
    """A sealed value could not be opened (wrong key, tampered or malformed)."""

    code = "decryption_failed"


@frozen
class SecretBox:
    """Seals and opens strings with AES-256-GCM and a random nonce per value."""

    key: bytes = field(repr=False)

    def __attrs_post_init__(self) -> None:
        """Refuse keys of the wrong length early, with a useful message."""
        if len(self.key) != KEY_BYTES:
            raise ConfigError(
                f"secret key must be {KEY_BYTES} bytes, got {len(self.key)}", field=KEY_FIELD
            )

    @classmethod
    def generate(cls) -> SecretBox:
        """A box with a fresh random key (tests, first start)."""
        return cls(secrets.token_bytes(KEY_BYTES))

    def seal(self, plaintext: str, context: str = "") -> str:
        """Encrypt ``plaintext``; ``context`` must be given again to open it."""
        nonce = secrets.token_bytes(NONCE_BYTES)
        sealed = AESGCM(self.key).encrypt(nonce, plaintext.encode("utf-8"), context.encode())
        return f"{VERSION}.{base64.urlsafe_b64encode(nonce + sealed).decode('ascii')}"

    def open(self, sealed: str, context: str = "") -> str:
        """Decrypt a value made by :meth:`seal` with the same ``context``.

        :raises DecryptionError: if it is malformed, of an unknown version, or
            was sealed under another key or context.
        """
        version, dot, body = sealed.partition(".")
        if not dot or version != VERSION:
            raise DecryptionError(f"sealed value has unknown version {version[:8]!r}")
        try:
            raw = base64.urlsafe_b64decode(body.encode("ascii"))
        except (binascii.Error, UnicodeEncodeError, ValueError):
            raise DecryptionError("sealed value is not valid base64") from None
        if len(raw) < NONCE_BYTES + 16:
            raise DecryptionError("sealed value is too short")
        try:
            plain = AESGCM(self.key).decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], context.encode())
        except InvalidTag:
            raise DecryptionError(
                "sealed value does not open with this key (wrong OAUTHPROXY_SECRET_KEY?)"
            ) from None
        return plain.decode("utf-8")


def key_from_b64(text: str) -> bytes:
    """Decode a 32-byte key given as (urlsafe or standard) base64.

    :raises ConfigError: with ``field="OAUTHPROXY_SECRET_KEY"`` when the text is
        not base64 or not 32 bytes long.
    """
    cleaned = text.strip()
    padded = cleaned + "=" * (-len(cleaned) % 4)
    try:
        key = base64.b64decode(padded.replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError("secret key is not valid base64", field=KEY_FIELD) from None
    if len(key) != KEY_BYTES:
        raise ConfigError(
            f"secret key must decode to {KEY_BYTES} bytes, got {len(key)}", field=KEY_FIELD
        )
    return key


def key_to_b64(key: bytes) -> str:
    """Encode a key the way :func:`key_from_b64` reads it."""
    return base64.urlsafe_b64encode(key).decode("ascii")


def load_or_create_key(data_dir: str) -> bytes:
    """Read ``<data_dir>/secret.key``, creating it (mode 0600) when absent.

    Blocking file I/O: call it at start-up, before the reactor runs.  Creation
    is atomic (``O_CREAT | O_EXCL`` on a temporary name, then ``link``), so two
    daemons starting at once agree on one key and nobody ever reads a partial
    file.

    :raises ConfigError: with ``field="OAUTHPROXY_SECRET_KEY"`` when the file
        exists but holds no valid key, or cannot be read or written.
    """
    path = os.path.join(data_dir, KEY_FILE_NAME)
    try:
        os.makedirs(data_dir, mode=0o700, exist_ok=True)
        if not os.path.exists(path):
            _create_key_file(data_dir, path)
        with open(path, encoding="ascii") as f:
            text = f.read()
    except OSError as e:
        raise ConfigError(f"cannot use key file {path}: {e.strerror}", field=KEY_FIELD) from None
    except UnicodeDecodeError:
        raise ConfigError(f"key file {path} is not base64 text", field=KEY_FIELD) from None
    try:
        return key_from_b64(text)
    except ConfigError as e:
        raise ConfigError(f"key file {path}: {e.detail}", field=KEY_FIELD) from None


def _create_key_file(data_dir: str, path: str) -> None:
    """Write a new random key to ``path`` unless someone else wins the race."""
    temporary = os.path.join(data_dir, f".{KEY_FILE_NAME}.{secrets.token_hex(8)}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(key_to_b64(secrets.token_bytes(KEY_BYTES)) + "\n")
            f.flush()
            os.fsync(f.fileno())
        # link() fails if the target exists: the first writer wins
        with contextlib.suppress(FileExistsError):
            os.link(temporary, path)
    finally:
        os.unlink(temporary)


def open_certificate(box: SecretBox, stored: Certificate) -> Certificate:
    """Decrypt the private key of a certificate as stored at rest."""
    if stored.private_key_pem is None:
        return stored
    return _evolve_key(stored, box.open(stored.private_key_pem, stored.cert_name))


def seal_certificate(box: SecretBox, certificate: Certificate) -> Certificate:
    """Encrypt the private key of a certificate for storage at rest."""
    if certificate.private_key_pem is None:
        return certificate
    return _evolve_key(certificate, box.seal(certificate.private_key_pem, certificate.cert_name))


def _evolve_key(certificate: Certificate, key: str) -> Certificate:
    """``certificate`` with ``private_key_pem`` replaced."""
    return evolve(certificate, private_key_pem=key)
