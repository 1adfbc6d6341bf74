"""The security rules every Docker service passes before anything reaches Docker."""

from __future__ import annotations

import os
import tempfile

from attrs import evolve
from twisted.trial.unittest import SynchronousTestCase

from oauthproxy.config import Config
from oauthproxy.containers.policy import PortPolicy
from oauthproxy.containers.rules import DockerRules
from oauthproxy.errors import InvalidInput
from oauthproxy.model import DockerService, ImageBuild, ServicePort, VolumeMount

WEB = DockerService("web", "local/busybox:1")


class RuleTests(SynchronousTestCase):
    """Each rule refuses with the field it is about."""

    def refused(self, rules: DockerRules, service: DockerService, field: str) -> str:
        """Assert ``rules`` refuse ``service`` naming ``field``; the detail."""
        with self.assertRaises(InvalidInput) as raised:
            rules.check(service)
        self.assertEqual(raised.exception.field, field, raised.exception.detail)
        return raised.exception.detail

    def test_a_plain_service_passes(self) -> None:
        """A local image with the default limits passes the default rules."""
        self.assertEqual(DockerRules().check(WEB), WEB)

    def test_image_outside_the_allowlist_is_refused(self) -> None:
        """With patterns, an image matching none is refused naming the setting."""
        rules = DockerRules(images=("local/*",))
        rules.check(WEB)
        detail = self.refused(rules, evolve(WEB, image="nginx:latest"), "/image")
        self.assertIn("OAUTHPROXY_DOCKER_IMAGES", detail)
        self.assertFalse(DockerRules().may_pull)
        self.assertTrue(rules.may_pull)

    def test_bind_mounts_only_under_the_configured_directories(self) -> None:
        """Host paths need OAUTHPROXY_DOCKER_MOUNT_DIRS; named volumes are always allowed."""
        allowed = tempfile.mkdtemp()
        self.addCleanup(os.rmdir, allowed)
        mount = VolumeMount("/etc", "/host-etc")
        self.refused(DockerRules(), evolve(WEB, volumes=(mount,)), "/volumes/0/source")
        rules = DockerRules(mount_dirs=(allowed,))
        self.refused(rules, evolve(WEB, volumes=(mount,)), "/volumes/0/source")
        escape = VolumeMount(os.path.join(allowed, "..", "etc"), "/x")
        self.refused(rules, evolve(WEB, volumes=(escape,)), "/volumes/0/source")
        rules.check(evolve(WEB, volumes=(VolumeMount(os.path.join(allowed, "data"), "/data"),)))
        DockerRules().check(evolve(WEB, volumes=(VolumeMount("cache", "/cache"),)))
        self.refused(
            DockerRules(), evolve(WEB, volumes=(VolumeMount("x", "/"),)), "/volumes/0/target"
        )

    def test_a_symlink_out_of_a_mount_directory_is_refused(self) -> None:
        """The check resolves links: a link inside pointing outside does not pass."""
        allowed = tempfile.mkdtemp()
        link = os.path.join(allowed, "out")
        os.symlink("/etc", link)
        self.addCleanup(lambda: (os.remove(link), os.rmdir(allowed)))
        rules = DockerRules(mount_dirs=(allowed,))
        self.refused(rules, evolve(WEB, volumes=(VolumeMount(link, "/x"),)), "/volumes/0/source")

    def test_host_networking_only_when_the_operator_allows_it(self) -> None:
        """network_mode host needs OAUTHPROXY_DOCKER_HOST_NETWORK."""
        detail = self.refused(DockerRules(), evolve(WEB, network_mode="host"), "/network_mode")
        self.assertIn("OAUTHPROXY_DOCKER_HOST_NETWORK", detail)
        DockerRules(host_network=True).check(evolve(WEB, network_mode="host"))

    def test_only_listed_capabilities_may_be_added(self) -> None:
        """cap_add beyond OAUTHPROXY_DOCKER_CAPABILITIES is refused; cap_drop is free."""
        self.refused(DockerRules(), evolve(WEB, cap_add=("SYS_ADMIN",)), "/cap_add/0")
        DockerRules(capabilities=("NET_BIND_SERVICE",)).check(
            evolve(WEB, cap_add=("NET_BIND_SERVICE",), cap_drop=("ALL",))
        )

    def test_limits_must_be_within_the_maximums(self) -> None:
        """Memory and CPU above the maximums (or absurdly low) are refused."""
        rules = DockerRules(max_memory=1024**3, max_cpus=2.0)
        self.refused(rules, evolve(WEB, memory_limit=2 * 1024**3), "/memory_limit")
        self.refused(rules, evolve(WEB, memory_limit=1024), "/memory_limit")
        self.refused(rules, evolve(WEB, cpu_limit=3.0), "/cpu_limit")

    def test_defaults_fill_the_limits_not_given(self) -> None:
        """A service without limits gets the configured defaults."""
        rules = DockerRules(memory=256 * 1024**2, cpus=0.5)
        filled = rules.with_defaults(WEB, memory=False, cpus=False)
        self.assertEqual((filled.memory_limit, filled.cpu_limit), (256 * 1024**2, 0.5))
        kept = rules.with_defaults(evolve(WEB, cpu_limit=2.0), memory=False, cpus=True)
        self.assertEqual(kept.cpu_limit, 2.0)

    def test_the_daemons_labels_are_reserved(self) -> None:
        """A label ``oauthproxy.*`` would confuse the reconciler: refused."""
        self.refused(
            DockerRules(),
            evolve(WEB, labels=(("oauthproxy.service", "x"),)),
            "/labels/oauthproxy.service",
        )

    def test_names_are_dns_labels_and_not_api_words(self) -> None:
        """Upper case, dots and the API's own path words are not service names."""
        for name in ("Web", "a.b", "ports", "cleanup", "external", "-x"):
            self.refused(DockerRules(), evolve(WEB, name=name), "/name")

    def test_builds_only_from_the_build_directories(self) -> None:
        """No build directories: no builds; the context must be under one, the file inside it."""
        root = tempfile.mkdtemp()
        self.addCleanup(os.rmdir, root)
        build = evolve(WEB, build=ImageBuild(root, "Dockerfile"))
        self.refused(DockerRules(), build, "/dockerfile_path")
        rules = DockerRules(build_dirs=(root,))
        rules.check(build)
        self.refused(rules, evolve(WEB, build=ImageBuild("/etc", "Dockerfile")), "/build_context")
        self.refused(
            rules, evolve(WEB, build=ImageBuild(root, "../x/Dockerfile")), "/dockerfile_path"
        )

    def test_ports_follow_the_policy_and_the_network_mode(self) -> None:
        """Restricted ports, own clashes, UDP access control, host-networking port rules."""
        rules = DockerRules(host_network=True, ports=PortPolicy())
        self.refused(rules, evolve(WEB, ports=(ServicePort("ssh", 22, 22),)), "/ports/0/host")
        two = (ServicePort("a", 9000, 1), ServicePort("a", 9001, 2))
        self.refused(rules, evolve(WEB, ports=two), "/ports")
        udp = ServicePort("dns", 9053, 53, protocol="udp", allowed_networks=("10.0.0.0/8",))
        self.refused(rules, evolve(WEB, ports=(udp,)), "/ports/0/protocol")
        host = evolve(WEB, network_mode="host")
        self.refused(rules, evolve(host, ports=(ServicePort("a", 9000, 80),)), "/ports/0/container")
        guarded = ServicePort("a", 9000, 9000, allowed_networks=("127.0.0.0/8",))
        self.refused(rules, evolve(host, ports=(guarded,)), "/ports/0/host")
        rules.check(evolve(host, ports=(ServicePort("a", 9000, 9000),)))
        rules.check(evolve(host, ports=(evolve(guarded, container=9001),)))
        self.refused(
            rules, evolve(WEB, network_mode="none", ports=(ServicePort("a", 9, 9),)), "/ports"
        )

    def test_rules_come_from_the_settings(self) -> None:
        """from_config reads every Docker setting."""
        config = Config(
            docker_images=("local/*",),
            docker_host_network=True,
            docker_capabilities=("NET_ADMIN",),
            port_ranges=((20000, 20010),),
            restricted_ports=(20005,),
        )
        rules = DockerRules.from_config(config)
        self.assertEqual(
            (rules.images, rules.host_network, rules.capabilities, rules.ports.ranges),
            (("local/*",), True, ("NET_ADMIN",), ((20000, 20010),)),
        )
        self.assertEqual(rules.ports.restricted, (20005,))
