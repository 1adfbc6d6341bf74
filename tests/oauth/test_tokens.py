"""Tests for :mod:`oauthproxy.oauth.tokens`: minting, verification, JWKS, key loading."""

from __future__ import annotations

import base64
import json

from joserfc import jwt
from joserfc.jwk import KeySet
from twisted.trial.unittest import SynchronousTestCase

from oauthproxy.errors import ConfigError
from oauthproxy.oauth.errors import InvalidToken
from oauthproxy.oauth.records import AccessTokenClaims
from oauthproxy.oauth.tokens import (
    introspection_response,
    jwks,
    key_to_pem_b64,
    load_signing_key,
    mint_access_token,
    public_key_from_jwk,
    signing_key_from_config,
    verify_access_token,
)
from tests.oauth.samples import ISSUER, RESOURCE_A, RESOURCE_B, other_signing_key, signing_key

NOW = 1_800_000_000.0


def mint(**overrides: object) -> tuple[str, AccessTokenClaims]:
    """A token for Alice on resource A, with keyword overrides."""
    args: dict[str, object] = {
        "issuer": ISSUER,
        "subject": "1001",
        "username": "alice",
        "audience": (RESOURCE_A,),
        "scopes": ("mcp:read",),
        "client_id": "client-pub",
        "now": NOW,
        "lifetime": 300,
    }
    args.update(overrides)
    return mint_access_token(signing_key(), **args)  # type: ignore[arg-type]


def keys() -> KeySet:
    """The verification key set (public part of the signing key)."""
    return KeySet([public_key_from_jwk(dict(signing_key().as_dict(private=False)))])


class MintTests(SynchronousTestCase):
    """What a minted token carries."""

    def test_token_carries_the_claims(self) -> None:
        """BCP-3, MCP-11: iss, aud list, sub, username, scope, jti, iat/exp from the clock."""
        token, claims = mint(audience=(RESOURCE_A, RESOURCE_B))
        payload = jwt.decode(token, keys(), algorithms=["RS256"]).claims
        self.assertEqual(payload["iss"], ISSUER)
        self.assertEqual(payload["aud"], [RESOURCE_A, RESOURCE_B])
        self.assertEqual(payload["sub"], "1001")
        self.assertEqual(payload["username"], "alice")
        self.assertEqual(payload["scope"], "mcp:read")
        self.assertEqual(payload["client_id"], "client-pub")
        self.assertEqual((payload["iat"], payload["exp"]), (int(NOW), int(NOW) + 300))
        self.assertEqual(payload["jti"], claims.jti)

    def test_header_has_thumbprint_kid_and_type(self) -> None:
        """RFC 9068: typ at+jwt, alg RS256, kid = RFC 7638 thumbprint."""
        token, _ = mint()
        header = jwt.decode(token, keys(), algorithms=["RS256"]).header
        self.assertEqual(header["alg"], "RS256")
        self.assertEqual(header["typ"], "at+jwt")
        self.assertEqual(header["kid"], signing_key().thumbprint())

    def test_each_token_gets_a_fresh_jti(self) -> None:
        """Revocation is by jti, so every token has its own."""
        self.assertNotEqual(mint()[1].jti, mint()[1].jti)


class VerifyTests(SynchronousTestCase):
    """Verification as the guard does it (MCP-17)."""

    def test_valid_token_verifies(self) -> None:
        """MCP-17: a token for this audience, in time, verifies and returns its claims."""
        token, claims = mint()
        verified = verify_access_token(token, keys(), issuer=ISSUER, audience=RESOURCE_A, now=NOW)
        self.assertEqual(verified, claims)

    def test_token_for_another_resource_is_refused(self) -> None:
        """ATK-21, MCP-17: a token minted for resource A is refused by resource B."""
        token, _ = mint()
        with self.assertRaises(InvalidToken):
            verify_access_token(token, keys(), issuer=ISSUER, audience=RESOURCE_B, now=NOW)

    def test_raw_github_token_is_refused(self) -> None:
        """ATK-21: a GitHub token presented to us is invalid_token (401)."""
        with self.assertRaises(InvalidToken) as cm:
            verify_access_token(
                "gho_16C7e42F292c6912E7710c838347Ae178B4a",
                keys(),
                issuer=ISSUER,
                audience=RESOURCE_A,
                now=NOW,
            )
        self.assertEqual(cm.exception.status, 401)

    def test_expired_token_is_refused(self) -> None:
        """MCP-17: at exp the token is refused."""
        token, _ = mint()
        verify_access_token(token, keys(), issuer=ISSUER, audience=RESOURCE_A, now=NOW + 299)
        with self.assertRaises(InvalidToken):
            verify_access_token(token, keys(), issuer=ISSUER, audience=RESOURCE_A, now=NOW + 300)

    def test_revoked_token_is_refused(self) -> None:
        """MCP-17: a jti in the revocation set is refused."""
        token, claims = mint()
        with self.assertRaises(InvalidToken):
            verify_access_token(
                token,
                keys(),
                issuer=ISSUER,
                audience=RESOURCE_A,
                now=NOW,
                revoked={claims.jti},
            )

    def test_other_issuer_is_refused(self) -> None:
        """MCP-9: a token from another issuer (same key) is refused."""
        token, _ = mint(issuer="https://other.example.test")
        with self.assertRaises(InvalidToken):
            verify_access_token(token, keys(), issuer=ISSUER, audience=RESOURCE_A, now=NOW)

    def test_foreign_key_is_refused(self) -> None:
        """MCP-17: a token signed by a key not in the set is refused."""
        token, _ = mint_access_token(
            other_signing_key(),
            issuer=ISSUER,
            subject="1",
            username="x",
            audience=(RESOURCE_A,),
            scopes=(),
            client_id="c",
            now=NOW,
            lifetime=60,
        )
        with self.assertRaises(InvalidToken):
            verify_access_token(token, keys(), issuer=ISSUER, audience=RESOURCE_A, now=NOW)

    def test_alg_none_is_refused(self) -> None:
        """MCP-17: an unsigned token (alg none) never verifies."""
        token, _ = mint()
        header = (
            base64.urlsafe_b64encode(json.dumps({"alg": "none", "typ": "at+jwt"}).encode())
            .rstrip(b"=")
            .decode()
        )
        forged = header + "." + token.split(".")[1] + "."
        with self.assertRaises(InvalidToken):
            verify_access_token(forged, keys(), issuer=ISSUER, audience=RESOURCE_A, now=NOW)

    def test_tampered_payload_is_refused(self) -> None:
        """MCP-17: changing the audience breaks the signature."""
        token, _ = mint()
        head, payload, sig = token.split(".")
        claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
        claims["aud"] = [RESOURCE_B]
        forged_payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=")
        forged = f"{head}.{forged_payload.decode()}.{sig}"
        with self.assertRaises(InvalidToken):
            verify_access_token(forged, keys(), issuer=ISSUER, audience=RESOURCE_B, now=NOW)

    def test_other_jwt_type_is_refused(self) -> None:
        """RFC 9068: a JWT that is not typed at+jwt is not an access token."""
        token = jwt.encode(
            {"alg": "RS256", "kid": signing_key().kid},
            {"iss": ISSUER, "aud": [RESOURCE_A], "sub": "1", "jti": "j", "iat": 1, "exp": 2**40},
            signing_key(),
        )
        with self.assertRaises(InvalidToken):
            verify_access_token(token, keys(), issuer=ISSUER, audience=RESOURCE_A, now=NOW)

    def test_audience_check_can_be_skipped_for_introspection(self) -> None:
        """RFC 7662: introspection reads aud instead of checking it."""
        token, _ = mint(audience=(RESOURCE_B,))
        claims = verify_access_token(token, keys(), issuer=ISSUER, audience=None, now=NOW)
        self.assertEqual(claims.audience, (RESOURCE_B,))


class KeyTests(SynchronousTestCase):
    """Key loading and the JWKS document."""

    def test_jwks_has_no_private_parameters(self) -> None:
        """The JWKS exposes only kty, n, e, kid, use, alg."""
        document = jwks([signing_key(), other_signing_key()])
        self.assertEqual(len(document["keys"]), 2)
        for key in document["keys"]:
            self.assertEqual(set(key), {"kty", "n", "e", "kid", "use", "alg"})

    def test_key_round_trips_through_base64_pem(self) -> None:
        """OAUTH_JWT_PRIVATE_KEY_B64 loads to the same key (same thumbprint kid)."""
        loaded = load_signing_key(key_to_pem_b64(signing_key()))
        self.assertEqual(loaded.kid, signing_key().kid)

    def test_rotated_keys_still_verify_old_tokens(self) -> None:
        """After rotation the key set holds both keys and old tokens still verify."""
        token, _ = mint()
        both = KeySet([other_signing_key(), signing_key()])
        verify_access_token(token, both, issuer=ISSUER, audience=RESOURCE_A, now=NOW)

    def test_garbage_key_setting_is_a_config_error(self) -> None:
        """A broken OAUTH_JWT_PRIVATE_KEY_B64 names the setting."""
        with self.assertRaises(ConfigError) as cm:
            load_signing_key("bm90IGEga2V5")
        self.assertEqual(cm.exception.field, "oauth_jwt_private_key_b64")

    def test_public_key_setting_is_a_config_error(self) -> None:
        """A public key cannot sign."""
        pem = signing_key().as_pem(private=False)
        with self.assertRaises(ConfigError):
            load_signing_key(base64.b64encode(pem).decode())

    def test_configured_key_is_used_when_present(self) -> None:
        """With a configured key no key is generated."""
        key = signing_key_from_config(key_to_pem_b64(signing_key()))
        self.assertEqual(key.kid, signing_key().kid)


class IntrospectionTests(SynchronousTestCase):
    """RFC 7662 answers."""

    def test_active_token_reports_claims(self) -> None:
        """RFC 7662 §2.2: an active token reports its claims."""
        _, claims = mint()
        answer = introspection_response(claims)
        self.assertIs(answer["active"], True)
        self.assertEqual(
            (answer["sub"], answer["aud"], answer["scope"]), ("1001", [RESOURCE_A], "mcp:read")
        )

    def test_anything_invalid_is_just_inactive(self) -> None:
        """RFC 7662 §2.2: an invalid token answers active:false and nothing more."""
        self.assertEqual(introspection_response(None), {"active": False})
