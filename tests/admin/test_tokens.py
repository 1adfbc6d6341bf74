"""Tests for ``/tokens/``: create, list, show, delete, rotate, and who may do what."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from oauthproxy.admin.credentials import hash_token
from oauthproxy.errors import StorageUnavailable
from tests.admin.harness import Harness


class CreateTests(SynchronousTestCase):
    """``POST /tokens/``."""

    def setUp(self) -> None:
        self.h = Harness(self)

    def test_admin_creates_token_and_sees_value_once(self) -> None:
        """The response carries the value; the store keeps only its SHA-256 digest."""
        answer = self.h.call(
            "POST",
            "/tokens/",
            token=self.h.admin_token,
            body={"name": "ci", "owner_email": "ci@example.com"},
        )
        self.assertEqual(answer.status, 201)
        created = answer.json()
        self.assertTrue(created["token"].startswith("acm_"))
        self.assertEqual(created["created_by"], "admin")
        self.assertEqual(answer.header(b"location"), b"/tokens/ci")
        stored = self.h.stored("ci")
        self.assertEqual(stored.token_hash, hash_token(created["token"]))
        self.assertNotIn(created["token"], repr(stored))

    def test_created_token_authenticates_once_the_snapshot_has_it(self) -> None:
        """A new token works for requests after the event reached the snapshot."""
        value = self.h.call(
            "POST",
            "/tokens/",
            token=self.h.admin_token,
            body={"name": "ci", "owner_email": "ci@example.com"},
        ).json()["token"]
        self.h.sync()
        self.assertEqual(self.h.call("GET", "/tokens/ci", token=value).status, 200)

    def test_existing_name_is_conflict(self) -> None:
        """Creating a second token with a taken name answers 409 naming the field."""
        self.h.add_token("ci")
        answer = self.h.call(
            "POST",
            "/tokens/",
            token=self.h.admin_token,
            body={"name": "ci", "owner_email": "ci@example.com"},
        )
        self.h.assert_error(answer, 409, "conflict", "/name")

    def test_admin_name_is_reserved(self) -> None:
        """No token can be created under the admin token's name."""
        answer = self.h.call(
            "POST",
            "/tokens/",
            token=self.h.admin_token,
            body={"name": "admin", "owner_email": "x@example.com"},
        )
        self.h.assert_error(answer, 409, "conflict", "/name")

    def test_non_admin_may_not_create(self) -> None:
        """Creating tokens needs the admin token: another token gets 403."""
        other = self.h.add_token("alice")
        answer = self.h.call(
            "POST", "/tokens/", token=other, body={"name": "b", "owner_email": "b@example.com"}
        )
        self.h.assert_error(answer, 403, "forbidden")
        self.assertFalse(self.h.exists("b"))

    def test_missing_owner_email_is_named(self) -> None:
        """A body without ``owner_email`` is 422 with field ``/owner_email``."""
        answer = self.h.call("POST", "/tokens/", token=self.h.admin_token, body={"name": "x"})
        self.h.assert_error(answer, 422, "invalid_input", "/owner_email")

    def test_invalid_name_is_named(self) -> None:
        """A name outside the allowed characters is 422 with field ``/name``."""
        answer = self.h.call(
            "POST",
            "/tokens/",
            token=self.h.admin_token,
            body={"name": "no spaces", "owner_email": "x@example.com"},
        )
        self.h.assert_error(answer, 422, "invalid_input", "/name")

    def test_invalid_email_is_named(self) -> None:
        """An owner_email that is not an address is 422 with field ``/owner_email``."""
        answer = self.h.call(
            "POST",
            "/tokens/",
            token=self.h.admin_token,
            body={"name": "x", "owner_email": "not-an-address"},
        )
        self.h.assert_error(answer, 422, "invalid_input", "/owner_email")

    def test_unknown_field_is_rejected(self) -> None:
        """An unknown field (here trying to mint an admin token) is 422 naming it."""
        answer = self.h.call(
            "POST",
            "/tokens/",
            token=self.h.admin_token,
            body={"name": "x", "owner_email": "x@example.com", "is_admin": True},
        )
        self.h.assert_error(answer, 422, "invalid_input", "/is_admin")
        self.assertFalse(self.h.exists("x"))


class ListTests(SynchronousTestCase):
    """``GET /tokens/``."""

    def setUp(self) -> None:
        self.h = Harness(self)
        self.alice = self.h.add_token("alice", email="team@example.com")
        self.h.add_token("bob", email="team@example.com")
        self.h.add_token("carol", email="carol@example.com")

    def test_admin_sees_every_token_without_values(self) -> None:
        """The admin's list has every token and neither values nor digests."""
        answer = self.h.call("GET", "/tokens/", token=self.h.admin_token)
        self.assertEqual(answer.status, 200)
        page = answer.json()
        self.assertEqual([t["name"] for t in page["items"]], ["admin", "alice", "bob", "carol"])
        for record in self.successResultOf(self.h.tokens.list()):
            self.assertNotIn(record.token_hash.encode(), answer.body)
        self.assertNotIn(b'"token"', answer.body)

    def test_non_admin_sees_only_itself(self) -> None:
        """A non-admin token's list holds only its own record."""
        page = self.h.call("GET", "/tokens/", token=self.alice).json()
        self.assertEqual([t["name"] for t in page["items"]], ["alice"])
        self.assertEqual(page["total"], 1)

    def test_pages_with_limit_and_offset(self) -> None:
        """``limit``/``offset`` select a page; ``next_offset`` points at the next one."""
        page = self.h.call("GET", "/tokens/?limit=2&offset=1", token=self.h.admin_token).json()
        self.assertEqual([t["name"] for t in page["items"]], ["alice", "bob"])
        self.assertEqual((page["total"], page["next_offset"]), (4, 3))

    def test_filters_by_owner_email(self) -> None:
        """``owner_email`` keeps only the matching tokens."""
        page = self.h.call(
            "GET", "/tokens/?owner_email=team@example.com", token=self.h.admin_token
        ).json()
        self.assertEqual([t["name"] for t in page["items"]], ["alice", "bob"])

    def test_limit_out_of_range_is_named(self) -> None:
        """``limit=0`` is 422 with field ``limit``."""
        answer = self.h.call("GET", "/tokens/?limit=0", token=self.h.admin_token)
        self.h.assert_error(answer, 422, "invalid_input", "limit")

    def test_last_use_is_shown(self) -> None:
        """A token's use is recorded and shows up as ``last_used_at``."""
        self.h.call("GET", "/tokens/", token=self.alice)
        page = self.h.call("GET", "/tokens/", token=self.alice).json()
        self.assertEqual(page["items"][0]["last_used_at"], self.h.clock.seconds())


class ShowTests(SynchronousTestCase):
    """``GET /tokens/{name}``."""

    def setUp(self) -> None:
        self.h = Harness(self)
        self.alice = self.h.add_token("alice")
        self.h.add_token("bob")

    def test_token_shows_itself(self) -> None:
        """A token may read its own record."""
        answer = self.h.call("GET", "/tokens/alice", token=self.alice)
        self.assertEqual((answer.status, answer.json()["name"]), (200, "alice"))

    def test_other_token_is_not_found(self) -> None:
        """Another token's record is 404, the same answer as for a missing one."""
        other = self.h.call("GET", "/tokens/bob", token=self.alice)
        missing = self.h.call("GET", "/tokens/nobody", token=self.alice)
        self.h.assert_error(other, 404, "not_found")
        self.assertEqual(other.json()["detail"].replace("bob", "X"), "no token 'X'")
        self.assertEqual(missing.json()["detail"].replace("nobody", "X"), "no token 'X'")

    def test_admin_shows_any_token(self) -> None:
        """The admin token reads every record."""
        self.assertEqual(self.h.call("GET", "/tokens/bob", token=self.h.admin_token).status, 200)

    def test_missing_token_is_not_found(self) -> None:
        """An unknown name is 404 for the admin too."""
        answer = self.h.call("GET", "/tokens/nobody", token=self.h.admin_token)
        self.h.assert_error(answer, 404, "not_found")

    def test_invalid_name_in_path_is_named(self) -> None:
        """A path parameter that breaks the name pattern is 422 with field ``name``."""
        answer = self.h.call("GET", "/tokens/-bad", token=self.h.admin_token)
        self.h.assert_error(answer, 422, "invalid_input", "name")


class DeleteTests(SynchronousTestCase):
    """``DELETE /tokens/{name}``."""

    def setUp(self) -> None:
        self.h = Harness(self)
        self.alice = self.h.add_token("alice")
        self.h.add_token("bob")

    def test_admin_deletes_token(self) -> None:
        """The admin revokes a token: 204 and the record is gone."""
        answer = self.h.call("DELETE", "/tokens/bob", token=self.h.admin_token)
        self.assertEqual((answer.status, answer.body), (204, b""))
        self.assertFalse(self.h.exists("bob"))

    def test_deleted_token_stops_working(self) -> None:
        """Once the snapshot has the deletion, the token gets 401."""
        self.h.call("DELETE", "/tokens/alice", token=self.h.admin_token)
        self.h.sync()
        answer = self.h.call("GET", "/tokens/alice", token=self.alice)
        self.h.assert_error(answer, 401, "invalid_token")

    def test_token_may_revoke_itself(self) -> None:
        """A non-admin token may delete its own record."""
        self.assertEqual(self.h.call("DELETE", "/tokens/alice", token=self.alice).status, 204)

    def test_token_may_not_delete_another(self) -> None:
        """A non-admin token cannot delete another token (404, nothing removed)."""
        answer = self.h.call("DELETE", "/tokens/bob", token=self.alice)
        self.h.assert_error(answer, 404, "not_found")
        self.assertTrue(self.h.exists("bob"))

    def test_admin_token_cannot_be_deleted(self) -> None:
        """Deleting the admin token through the API is 403; it stays."""
        answer = self.h.call("DELETE", "/tokens/admin", token=self.h.admin_token)
        self.h.assert_error(answer, 403, "forbidden")
        self.assertTrue(self.h.exists("admin"))

    def test_missing_token_is_not_found(self) -> None:
        """Deleting an unknown token is 404."""
        answer = self.h.call("DELETE", "/tokens/nobody", token=self.h.admin_token)
        self.h.assert_error(answer, 404, "not_found")


class RotateTests(SynchronousTestCase):
    """``POST /tokens/{name}/rotate``."""

    def setUp(self) -> None:
        self.h = Harness(self)
        self.alice = self.h.add_token("alice")
        self.h.add_token("bob")

    def test_rotation_replaces_the_value(self) -> None:
        """The new value works and the old one is refused once the snapshot has it."""
        answer = self.h.call("POST", "/tokens/alice/rotate", token=self.alice)
        self.assertEqual(answer.status, 200)
        new = answer.json()["token"]
        self.assertNotEqual(new, self.alice)
        self.h.sync()
        self.assertEqual(self.h.call("GET", "/tokens/alice", token=new).status, 200)
        self.h.assert_error(
            self.h.call("GET", "/tokens/alice", token=self.alice), 401, "invalid_token"
        )

    def test_rotation_keeps_the_record(self) -> None:
        """Rotation changes only the digest: name, owner and creation time stay."""
        before = self.h.stored("alice")
        self.h.call("POST", "/tokens/alice/rotate", token=self.h.admin_token)
        after = self.h.stored("alice")
        self.assertEqual(
            (after.name, after.owner_email, after.created_at),
            (before.name, before.owner_email, before.created_at),
        )
        self.assertNotEqual(after.token_hash, before.token_hash)

    def test_token_may_not_rotate_another(self) -> None:
        """A non-admin token cannot rotate another token."""
        before = self.h.stored("bob")
        answer = self.h.call("POST", "/tokens/bob/rotate", token=self.alice)
        self.h.assert_error(answer, 404, "not_found")
        self.assertEqual(self.h.stored("bob"), before)

    def test_missing_token_is_not_found(self) -> None:
        """Rotating an unknown token is 404."""
        answer = self.h.call("POST", "/tokens/nobody/rotate", token=self.h.admin_token)
        self.h.assert_error(answer, 404, "not_found")


class StoreDownTests(SynchronousTestCase):
    """The admin API while Redis does not answer."""

    def test_store_down_is_503(self) -> None:
        """Token endpoints answer 503; authentication still works from the snapshot."""
        h = Harness(self)
        h.storage.set_available(False)
        answer = h.call("GET", "/tokens/", token=h.admin_token)
        h.assert_error(answer, 503, "storage_unavailable")
        self.flushLoggedErrors(StorageUnavailable)


class WhoAmITests(SynchronousTestCase):
    """``GET /whoami``: the console learns who signed in."""

    def test_admin_and_other_tokens_are_told_apart(self) -> None:
        """The admin token is ``is_admin``; another token gets its own name."""
        h = Harness(self)
        bob = h.add_token("bob")
        self.assertEqual(
            h.call("GET", "/whoami", token=h.admin_token).json(),
            {"name": "admin", "is_admin": True},
        )
        self.assertEqual(
            h.call("GET", "/whoami", token=bob).json(), {"name": "bob", "is_admin": False}
        )

    def test_without_token_is_401(self) -> None:
        """Anonymous callers are nobody."""
        h = Harness(self)
        h.assert_error(h.call("GET", "/whoami"), 401, "unauthorized")
