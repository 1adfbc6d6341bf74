"""Reading Docker's own output (:mod:`oauthproxy.containers.docker_calls`, pure parts)."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from oauthproxy.containers.docker_calls import container_info, docker_time


class DockerTimeTests(SynchronousTestCase):
    """Docker's RFC 3339 times as POSIX seconds."""

    def test_nanosecond_time_in_utc(self) -> None:
        """Docker's nine fraction digits are read (to the microsecond), ``Z`` is UTC."""
        self.assertEqual(docker_time("2026-12-06T15:00:00.123456789Z"), 1796569200.123456)

    def test_zero_time_and_junk_are_none(self) -> None:
        """The zero time of a never-started container, junk and non-strings: None."""
        for value in ("0001-01-01T00:00:00Z", "yesterday", "", None, 5):
            self.assertIsNone(docker_time(value), value)

    def test_inspect_output_carries_started_at_as_seconds(self) -> None:
        """``container_info`` of inspect output gives ``started_at`` in POSIX seconds."""
        info = container_info(
            {"Id": "abc", "Name": "/web", "State": {"Status": "running",
             "StartedAt": "2026-12-06T15:00:00Z"}, "Config": {"Labels": {}}}
        )  # fmt: skip
        self.assertEqual((info.name, info.state, info.started_at), ("web", "running", 1796569200.0))
