"""Tests for :mod:`oauthproxy.storage.crypto`: secrets sealed at rest and key files."""

from __future__ import annotations

import base64
import os
import stat

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from oauthproxy.errors import ConfigError
from oauthproxy.model import Certificate
from oauthproxy.storage.crypto import (
    DecryptionError,
    SecretBox,
    key_from_b64,
    key_to_b64,
    load_or_create_key,
    open_certificate,
    seal_certificate,
)

BOX = SecretBox(bytes(range(32)))


class SecretBoxTests(SynchronousTestCase):
    """Sealing and opening with AES-GCM."""

    @given(plaintext=st.text(), context=st.text(max_size=20))
    def test_round_trip(self, plaintext: str, context: str) -> None:
        """Whatever is sealed opens to the same text with the same context."""
        self.assertEqual(BOX.open(BOX.seal(plaintext, context), context), plaintext)

    def test_versioned_and_random(self) -> None:
        """Sealed values carry a version prefix and differ each time (random nonce)."""
        one, two = BOX.seal("secret"), BOX.seal("secret")
        self.assertTrue(one.startswith("v1."))
        self.assertNotEqual(one, two)
        self.assertNotIn("secret", one)

    def test_wrong_key_fails(self) -> None:
        """Another key cannot open a sealed value."""
        with self.assertRaises(DecryptionError):
            SecretBox.generate().open(BOX.seal("secret"))

    def test_wrong_context_fails(self) -> None:
        """A value sealed for one record does not open for another."""
        with self.assertRaises(DecryptionError):
            BOX.open(BOX.seal("secret", "cert-a"), "cert-b")

    def test_tampering_fails(self) -> None:
        """Changing one byte of the ciphertext is detected."""
        sealed = BOX.seal("secret")
        raw = bytearray(base64.urlsafe_b64decode(sealed[3:]))
        raw[-1] ^= 1
        with self.assertRaises(DecryptionError):
            BOX.open("v1." + base64.urlsafe_b64encode(bytes(raw)).decode())

    def test_malformed_values_fail_cleanly(self) -> None:
        """Unknown versions, bad base64 and short values raise DecryptionError."""
        for bad in ("v2.AAAA", "plaintext", "v1.***", "v1.AAAA"):
            with self.assertRaises(DecryptionError, msg=bad):
                BOX.open(bad)

    def test_key_length_is_checked(self) -> None:
        """A key that is not 32 bytes is a configuration error."""
        with self.assertRaises(ConfigError) as raised:
            SecretBox(b"short")
        self.assertEqual(raised.exception.field, "OAUTHPROXY_SECRET_KEY")

    def test_certificate_helpers(self) -> None:
        """seal_certificate hides the key; open_certificate restores the record."""
        cert = Certificate("c1", ("a",), private_key_pem="PEM")
        sealed = seal_certificate(BOX, cert)
        self.assertNotEqual(sealed.private_key_pem, "PEM")
        self.assertEqual(open_certificate(BOX, sealed), cert)
        bare = Certificate("c2", ("a",))
        self.assertIs(seal_certificate(BOX, bare), bare)


class KeyTextTests(SynchronousTestCase):
    """``key_from_b64`` for OAUTHPROXY_SECRET_KEY."""

    def test_accepts_urlsafe_and_standard_base64(self) -> None:
        """Both alphabets, with or without padding, decode to the key."""
        key = bytes([0xFB, 0xFF] * 16)
        for text in (key_to_b64(key), base64.b64encode(key).decode(), key_to_b64(key).rstrip("=")):
            self.assertEqual(key_from_b64(text), key, text)

    def test_rejects_bad_text_naming_the_setting(self) -> None:
        """Non-base64 text and wrong lengths raise ConfigError on OAUTHPROXY_SECRET_KEY."""
        for text, expected in (("not base64!", "base64"), (key_to_b64(b"x" * 16), "32 bytes")):
            with self.assertRaises(ConfigError) as raised:
                key_from_b64(text)
            self.assertEqual(raised.exception.field, "OAUTHPROXY_SECRET_KEY")
            self.assertIn(expected, raised.exception.detail)


class KeyFileTests(SynchronousTestCase):
    """``load_or_create_key`` and ``<data_dir>/secret.key``."""

    def test_creates_private_key_file_once(self) -> None:
        """The first call creates a 0600 file; later calls read the same key."""
        data_dir = self.mktemp()
        key = load_or_create_key(data_dir)
        path = os.path.join(data_dir, "secret.key")
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)
        self.assertEqual(load_or_create_key(data_dir), key)
        self.assertEqual(len(key), 32)
        self.assertEqual(os.listdir(data_dir), ["secret.key"])

    def test_existing_key_file_is_used(self) -> None:
        """A key file written by the operator is read, not replaced."""
        data_dir = self.mktemp()
        os.makedirs(data_dir)
        with open(os.path.join(data_dir, "secret.key"), "w") as f:
            f.write(key_to_b64(b"k" * 32) + "\n")
        self.assertEqual(load_or_create_key(data_dir), b"k" * 32)

    def test_corrupt_key_file_is_a_config_error(self) -> None:
        """A key file without a valid key raises ConfigError naming the file."""
        data_dir = self.mktemp()
        os.makedirs(data_dir)
        with open(os.path.join(data_dir, "secret.key"), "w") as f:
            f.write("garbage")
        with self.assertRaises(ConfigError) as raised:
            load_or_create_key(data_dir)
        self.assertIn("secret.key", raised.exception.detail)
