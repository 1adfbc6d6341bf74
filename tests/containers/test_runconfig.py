"""A service record as Docker's create arguments, and how the daemon reaches a container."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from oauthproxy.containers.runconfig import (
    DEPLOYMENT_LABEL,
    GENERATION_LABEL,
    SERVICE_LABEL,
    container_ip,
    create_arguments,
)
from oauthproxy.containers.runtime import ContainerInfo
from oauthproxy.model import DockerService, HealthCheck, ServicePort, VolumeMount

SERVICE = DockerService(
    name="web",
    image="local/busybox:1",
    command=("httpd", "-f"),
    environment=(("A", "1"),),
    labels=(("team", "ops"),),
    volumes=(VolumeMount("/srv/data", "/data", True), VolumeMount("cache", "/cache")),
    memory_limit=64 * 1024**2,
    cpu_limit=0.25,
    restart_policy="on-failure",
    restart_max_retries=3,
    healthcheck=HealthCheck(("wget", "-q", "-O-", "http://127.0.0.1/"), 5, 2, 3, 1),
    user="nobody",
    read_only=True,
    cap_drop=("ALL",),
    ports=(
        ServicePort("http", 8080, 80),
        ServicePort("alt", 8081, 80, "0.0.0.0"),
        ServicePort("guarded", 8082, 81, token_hash="ab" * 32),
    ),
    generation=4,
)


class CreateArgumentsTests(SynchronousTestCase):
    """Every field reaches Docker; the fixed security settings are always there."""

    def test_every_field_is_passed_on(self) -> None:
        """Image, command, environment, mounts, limits, restart policy, healthcheck, user."""
        arguments = create_arguments(SERVICE, "dep1", "oauthproxy")
        self.assertEqual(arguments["image"], "local/busybox:1")
        self.assertEqual(arguments["command"], ["httpd", "-f"])
        self.assertEqual(arguments["environment"], {"A": "1"})
        self.assertEqual(arguments["mem_limit"], 64 * 1024**2)
        self.assertEqual(arguments["nano_cpus"], 250_000_000)
        self.assertEqual(
            arguments["restart_policy"], {"Name": "on-failure", "MaximumRetryCount": 3}
        )
        self.assertEqual(
            arguments["healthcheck"]["test"], ["CMD", "wget", "-q", "-O-", "http://127.0.0.1/"]
        )
        self.assertEqual(arguments["healthcheck"]["interval"], 5_000_000_000)
        self.assertEqual(arguments["user"], "nobody")
        self.assertEqual(arguments["cap_drop"], ["ALL"])
        self.assertTrue(arguments["read_only"])
        self.assertEqual(
            arguments["mounts"],
            [
                {"Type": "bind", "Source": "/srv/data", "Target": "/data", "ReadOnly": True},
                {"Type": "volume", "Source": "cache", "Target": "/cache", "ReadOnly": False},
            ],
        )

    def test_fixed_security_settings(self) -> None:
        """Never privileged, no-new-privileges, an init, bounded logs, whatever the record says."""
        arguments = create_arguments(DockerService("x", "i:1"), "d", "n")
        self.assertIs(arguments["privileged"], False)
        self.assertEqual(arguments["security_opt"], ["no-new-privileges"])
        self.assertIs(arguments["init"], True)
        self.assertEqual(arguments["log_config"]["Config"]["max-size"], "10m")
        for key in ("pid_mode", "ipc_mode", "devices", "uts_mode", "userns_mode"):
            self.assertNotIn(key, arguments)

    def test_labels_mark_the_daemons_containers(self) -> None:
        """User labels plus deployment, service and generation."""
        labels = create_arguments(SERVICE, "dep1", "oauthproxy")["labels"]
        self.assertEqual(labels["team"], "ops")
        self.assertEqual(
            (labels[DEPLOYMENT_LABEL], labels[SERVICE_LABEL], labels[GENERATION_LABEL]),
            ("dep1", "web", "4"),
        )

    def test_docker_publishes_only_unguarded_ports_on_a_bridge(self) -> None:
        """Two binds of one container port are both published; the guarded one is not."""
        arguments = create_arguments(SERVICE, "d", "oauthproxy")
        self.assertEqual(arguments["ports"], {"80/tcp": [("127.0.0.1", 8080), ("0.0.0.0", 8081)]})
        self.assertEqual(arguments["network"], "oauthproxy")
        hosted = DockerService("x", "i:1", network_mode="host", ports=(ServicePort("a", 9, 9),))
        host = create_arguments(hosted, "d", "n")
        self.assertEqual((host["ports"], host["network_mode"]), ({}, "host"))
        self.assertNotIn("network", host)


class ContainerIpTests(SynchronousTestCase):
    """Where the daemon reaches a container."""

    def test_host_networking_is_loopback(self) -> None:
        """With the host's network the container is on 127.0.0.1, running or not."""
        self.assertEqual(
            container_ip(DockerService("x", "i:1", network_mode="host"), None, "n"), "127.0.0.1"
        )

    def test_a_bridge_container_is_reached_at_its_ip_on_the_default_network(self) -> None:
        """The default network's address wins; a stopped container has none."""
        info = ContainerInfo(
            "id", "x", "running", addresses=(("extra", "10.1.0.2"), ("n", "10.2.0.3"))
        )
        self.assertEqual(container_ip(DockerService("x", "i:1"), info, "n"), "10.2.0.3")
        stopped = ContainerInfo("id", "x", "exited", addresses=(("n", "10.2.0.3"),))
        self.assertIsNone(container_ip(DockerService("x", "i:1"), stopped, "n"))
