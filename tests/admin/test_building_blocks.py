"""Tests for the building blocks later resources reuse: schemas, listing, ownership, records."""

from __future__ import annotations

from attrs import frozen
from twisted.trial.unittest import SynchronousTestCase

from oauthproxy.admin.access import (
    ANONYMOUS,
    Principal,
    may_access,
    require_access,
    require_admin,
    visible,
)
from oauthproxy.admin.listing import page_query, paginate
from oauthproxy.admin.records import merged, record_json
from oauthproxy.admin.schema import (
    array,
    check_request_schema,
    nullable,
    obj,
    string,
    validate,
    validator,
)
from oauthproxy.errors import Forbidden, InvalidInput, NotFound
from oauthproxy.model import Certificate, Proxy, ProxyAuth

ADMIN = Principal("admin", is_admin=True)
ALICE = Principal("alice")


@frozen
class Thing:
    """A record with an owner, like every resource's records."""

    name: str
    owner: str
    colour: str = "red"


THINGS = [Thing("a", "alice"), Thing("b", "bob", "blue"), Thing("c", "alice", "blue")]


class SchemaTests(SynchronousTestCase):
    """Builders and validation errors."""

    def test_objects_are_closed_by_default(self) -> None:
        """``obj`` rejects unknown fields unless declared open."""
        self.assertIs(obj({})["additionalProperties"], False)
        self.assertNotIn("additionalProperties", obj({}, open=True))

    def test_required_must_name_properties(self) -> None:
        """Requiring an undeclared property is a declaration error."""
        self.assertRaises(ValueError, obj, {"a": string()}, required=("b",))

    def test_builders_pass_the_request_check(self) -> None:
        """Schemas built with the builders are bounded and closed."""
        check_request_schema(obj({"a": array(string()), "b": nullable(string())}))

    def test_missing_required_field_is_named(self) -> None:
        """A missing required field is named by its own pointer, not its parent's."""
        check = validator(obj({"inner": obj({"x": string()}, required=("x",))}))
        with self.assertRaises(InvalidInput) as raised:
            validate(check, {"inner": {}})
        self.assertEqual(raised.exception.field, "/inner/x")

    def test_long_messages_are_bounded(self) -> None:
        """The detail never echoes a huge offending value whole."""
        check = validator(string(max_length=5))
        with self.assertRaises(InvalidInput) as raised:
            validate(check, "x" * 10_000)
        self.assertLessEqual(len(raised.exception.detail), 200)

    def test_pointer_escapes_slashes(self) -> None:
        """Field names with ``/`` are escaped as JSON pointers require (RFC 6901)."""
        check = validator({"type": "object", "additionalProperties": {"type": "integer"}})
        with self.assertRaises(InvalidInput) as raised:
            validate(check, {"a/b": "x"})
        self.assertEqual(raised.exception.field, "/a~1b")


class ListingTests(SynchronousTestCase):
    """Pagination and filters."""

    def test_filter_then_page(self) -> None:
        """Filters apply before the page is cut; total counts the matches."""
        page = paginate(
            THINGS, {"limit": 1, "offset": 0, "colour": "blue"}, lambda t: t.name, ["colour"]
        )
        self.assertEqual(
            page, {"items": ["b"], "total": 2, "limit": 1, "offset": 0, "next_offset": 1}
        )

    def test_last_page_has_no_next(self) -> None:
        """On the last page ``next_offset`` is None."""
        page = paginate(THINGS, {"limit": 2, "offset": 2}, lambda t: t.name)
        self.assertEqual((page["items"], page["next_offset"]), (["c"], None))

    def test_absent_filter_keeps_everything(self) -> None:
        """A filter that is not given (None) filters nothing."""
        page = paginate(THINGS, {"colour": None}, lambda t: t.name, ["colour"])
        self.assertEqual(page["total"], 3)

    def test_page_query_adds_filters(self) -> None:
        """``page_query`` combines limit/offset with the resource's filters."""
        self.assertEqual(set(page_query({"colour": string()})), {"limit", "offset", "colour"})


class OwnershipTests(SynchronousTestCase):
    """Admin sees all; other tokens only their own."""

    def test_admin_sees_everything(self) -> None:
        """The admin token sees every record."""
        self.assertEqual(visible(ADMIN, THINGS, lambda t: t.owner), THINGS)

    def test_token_sees_only_its_own(self) -> None:
        """Another token sees only the records it owns."""
        self.assertEqual([t.name for t in visible(ALICE, THINGS, lambda t: t.owner)], ["a", "c"])

    def test_anonymous_owns_nothing(self) -> None:
        """An unauthenticated caller may access nothing, even with an empty owner."""
        self.assertFalse(may_access(ANONYMOUS, ""))

    def test_foreign_record_is_not_found(self) -> None:
        """Another token's record is reported as missing, not as forbidden."""
        self.assertRaises(NotFound, require_access, ALICE, "bob", "thing 'b'")

    def test_admin_only_action_is_forbidden(self) -> None:
        """``require_admin`` refuses other tokens with Forbidden."""
        self.assertRaises(Forbidden, require_admin, ALICE, "do it")
        require_admin(ADMIN, "do it")


class RecordTests(SynchronousTestCase):
    """Records to JSON and PATCH bodies onto records."""

    def test_secret_fields_are_left_out(self) -> None:
        """Fields the model hides from repr (private keys, digests) never reach JSON."""
        certificate = Certificate(cert_name="c", domains=("a.example",), private_key_pem="KEY")
        rendered = record_json(certificate)
        self.assertNotIn("private_key_pem", rendered)
        self.assertEqual(rendered["domains"], ["a.example"])

    def test_excluded_fields_are_left_out(self) -> None:
        """``exclude`` drops more fields."""
        proxy = Proxy(hostname="a.example", target_url="http://b")
        self.assertNotIn("owner", record_json(proxy, exclude=("owner",)))

    def test_merge_changes_only_given_fields(self) -> None:
        """A PATCH body changes its fields, converts lists and nested objects, keeps the rest."""
        proxy = Proxy(hostname="a.example", target_url="http://b", read_timeout=5.0)
        patched = merged(
            proxy,
            {"custom_request_headers": [["X-A", "1"]], "auth": {"required_users": ["bob"]}},
        )
        self.assertEqual(patched.custom_request_headers, (("X-A", "1"),))
        self.assertEqual(patched.auth, ProxyAuth(required_users=("bob",)))
        self.assertEqual((patched.read_timeout, patched.target_url), (5.0, "http://b"))

    def test_merge_refuses_unknown_fields(self) -> None:
        """A field the record does not have is named."""
        proxy = Proxy(hostname="a.example", target_url="http://b")
        with self.assertRaises(InvalidInput) as raised:
            merged(proxy, {"nonsense": 1})
        self.assertEqual(raised.exception.field, "/nonsense")
