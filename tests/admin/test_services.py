"""Tests for ``/services/external/``: named URLs for routes, with ownership."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from oauthproxy.model import DockerService, ExternalService, Route
from tests.admin.harness import Answer, Harness


def register(
    h: Harness, token: str, name: str, url: str = "http://api:8080", **more: str
) -> Answer:
    """``POST /services/external/``."""
    body = {"name": name, "target_url": url, **more}
    return h.call("POST", "/services/external/", token=token, body=body)


def stored_service(h: Harness, name: str) -> ExternalService | None:
    """The service record the store holds under ``name``."""
    service: ExternalService | None = h.test.successResultOf(h.storage.services.get(name))
    return service


class CreateTests(SynchronousTestCase):
    """``POST /services/external/``."""

    def setUp(self) -> None:
        self.h = Harness(self)

    def test_registers_with_owner_and_times(self) -> None:
        """The service is stored as given, owned by the caller, timed by the clock."""
        answer = register(self.h, self.h.admin_token, "backend-api", description="The API")
        self.assertEqual(answer.status, 201, answer.body)
        self.assertEqual(answer.header(b"location"), b"/services/external/backend-api")
        now = self.h.clock.seconds()
        self.assertEqual(
            stored_service(self.h, "backend-api"),
            ExternalService("backend-api", "http://api:8080", "The API", "admin", now, now),
        )

    def test_duplicate_name_is_conflict(self) -> None:
        """A taken name is 409 /name."""
        register(self.h, self.h.admin_token, "backend-api")
        answer = register(self.h, self.h.admin_token, "backend-api")
        self.h.assert_error(answer, 409, "conflict", "/name")

    def test_a_docker_services_name_is_taken(self) -> None:
        """External and Docker services share names (routes target them by name): 409."""
        self.h.test.successResultOf(
            self.h.storage.docker_services.create(DockerService("web", "i:1"))
        )
        answer = register(self.h, self.h.admin_token, "web")
        error = self.h.assert_error(answer, 409, "conflict", "/name")
        self.assertIn("Docker service", error["detail"])

    def test_invalid_url_is_named(self) -> None:
        """A target that is no http(s) URL is 422 /target_url."""
        answer = register(self.h, self.h.admin_token, "x", url="gopher://old")
        self.h.assert_error(answer, 422, "invalid_input", "/target_url")

    def test_invalid_name_is_named(self) -> None:
        """A name with a slash is 422 /name."""
        answer = register(self.h, self.h.admin_token, "a/b")
        self.h.assert_error(answer, 422, "invalid_input", "/name")


class ReadTests(SynchronousTestCase):
    """Listing and showing, with ownership."""

    def setUp(self) -> None:
        self.h = Harness(self)
        self.alice = self.h.add_token("alice")
        self.bob = self.h.add_token("bob")
        register(self.h, self.alice, "a-svc")
        register(self.h, self.bob, "b-svc", url="http://b:1")

    def test_admin_lists_all_and_others_only_their_own(self) -> None:
        """The admin sees both services; each token sees its own."""
        for token, names in ((self.h.admin_token, ["a-svc", "b-svc"]), (self.alice, ["a-svc"])):
            page = self.h.call("GET", "/services/external/", token=token).json()
            self.assertEqual([s["name"] for s in page["items"]], names)

    def test_filters_by_target_url(self) -> None:
        """``target_url`` selects by exact value."""
        page = self.h.call(
            "GET", "/services/external/?target_url=http://b:1", token=self.h.admin_token
        ).json()
        self.assertEqual([s["name"] for s in page["items"]], ["b-svc"])

    def test_other_owners_service_is_404(self) -> None:
        """Token B cannot read token A's service."""
        answer = self.h.call("GET", "/services/external/a-svc", token=self.bob)
        self.h.assert_error(answer, 404, "not_found")

    def test_admin_reads_any_service(self) -> None:
        """The admin token reads token A's service."""
        answer = self.h.call("GET", "/services/external/a-svc", token=self.h.admin_token)
        self.assertEqual((answer.status, answer.json()["owner"]), (200, "alice"))


class UpdateTests(SynchronousTestCase):
    """``PUT``/``PATCH /services/external/{name}``."""

    def setUp(self) -> None:
        self.h = Harness(self)
        self.alice = self.h.add_token("alice")
        self.bob = self.h.add_token("bob")
        register(self.h, self.alice, "a-svc", description="keep me")
        self.h.clock.advance(5)

    def test_patch_changes_only_the_given_fields(self) -> None:
        """A new URL keeps the description and moves updated_at."""
        answer = self.h.call(
            "PATCH",
            "/services/external/a-svc",
            token=self.alice,
            body={"target_url": "https://moved:9"},
        )
        self.assertEqual(answer.status, 200, answer.body)
        service = stored_service(self.h, "a-svc")
        assert service is not None
        self.assertEqual((service.target_url, service.description), ("https://moved:9", "keep me"))
        self.assertEqual(service.updated_at - service.created_at, 5)

    def test_put_with_description_only(self) -> None:
        """PUT with only a description keeps the URL."""
        self.h.call(
            "PUT", "/services/external/a-svc", token=self.alice, body={"description": "new"}
        )
        service = stored_service(self.h, "a-svc")
        assert service is not None
        self.assertEqual((service.target_url, service.description), ("http://api:8080", "new"))

    def test_invalid_url_is_named_and_not_stored(self) -> None:
        """An invalid URL is 422 /target_url; the record stays."""
        answer = self.h.call(
            "PATCH", "/services/external/a-svc", token=self.alice, body={"target_url": "x"}
        )
        self.h.assert_error(answer, 422, "invalid_input", "/target_url")
        service = stored_service(self.h, "a-svc")
        assert service is not None
        self.assertEqual(service.target_url, "http://api:8080")

    def test_other_owner_cannot_change(self) -> None:
        """Token B's PATCH of token A's service is 404."""
        answer = self.h.call(
            "PATCH", "/services/external/a-svc", token=self.bob, body={"description": "mine"}
        )
        self.h.assert_error(answer, 404, "not_found")

    def test_admin_changes_any_service(self) -> None:
        """The admin token changes token A's service."""
        answer = self.h.call(
            "PATCH", "/services/external/a-svc", token=self.h.admin_token, body={"description": "x"}
        )
        self.assertEqual(answer.status, 200)


class DeleteTests(SynchronousTestCase):
    """``DELETE /services/external/{name}``."""

    def setUp(self) -> None:
        self.h = Harness(self)
        self.alice = self.h.add_token("alice")
        self.bob = self.h.add_token("bob")
        register(self.h, self.alice, "a-svc")

    def test_owner_deletes(self) -> None:
        """DELETE is 204 and the service is gone."""
        answer = self.h.call("DELETE", "/services/external/a-svc", token=self.alice)
        self.assertEqual(answer.status, 204)
        self.assertIsNone(stored_service(self.h, "a-svc"))

    def test_service_in_use_is_conflict_naming_the_route(self) -> None:
        """While a route targets the service, DELETE is 409 naming that route."""
        route = Route("api-route", "/api/", "service", "a-svc", owner="alice")
        self.successResultOf(self.h.storage.routes.create(route))
        answer = self.h.call("DELETE", "/services/external/a-svc", token=self.alice)
        error = self.h.assert_error(answer, 409, "conflict")
        self.assertIn("api-route", error["detail"])
        self.assertIsNotNone(stored_service(self.h, "a-svc"))

    def test_other_owner_cannot_delete(self) -> None:
        """Token B's DELETE of token A's service is 404; it stays."""
        answer = self.h.call("DELETE", "/services/external/a-svc", token=self.bob)
        self.h.assert_error(answer, 404, "not_found")
        self.assertIsNotNone(stored_service(self.h, "a-svc"))

    def test_admin_deletes_any_service(self) -> None:
        """The admin token deletes token A's service."""
        answer = self.h.call("DELETE", "/services/external/a-svc", token=self.h.admin_token)
        self.assertEqual(answer.status, 204)

    def test_unknown_is_404(self) -> None:
        """Deleting an unknown service is 404."""
        answer = self.h.call("DELETE", "/services/external/nope", token=self.h.admin_token)
        self.h.assert_error(answer, 404, "not_found")
