"""``oauthproxyctl service ...`` for Docker services (``/services/``) and their ports.

The seed's commands, with its arguments, under the ``service`` group
(:mod:`oauthproxy.cli.service` adds them; this module has no ``register``):

- ``service create NAME [IMAGE] [--dockerfile F --context DIR] [--port N] [--memory M]
  [--cpu C] [--auto-proxy] [--command WORDS] ...``
- ``service create-exposed NAME IMAGE PORT [BIND]``: a service whose ``PORT`` is
  reachable on ``BIND:PORT`` of the host (default ``127.0.0.1``);
- ``service list|show|update|delete|start|stop|restart|stats NAME``;
- ``service logs NAME [LINES] [--timestamps] [--follow]``;
- ``service proxy-create NAME [HOSTNAME] [--no-https]``; ``service cleanup [--dry-run]``;
- ``service port ...``: :mod:`oauthproxy.cli.service_port`.

``--command``, ``--entrypoint`` and ``--healthcheck`` take words split like a
shell splits them (quotes work); the daemon gets a list and no shell ever runs it.
Creating, updating and starting can take long (a build or a pull): these wait up
to :data:`LONG` seconds and say so on a terminal.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from typing import Any

from oauthproxy.cli.context import CliError, Context, command
from oauthproxy.cli.paging import all_items, for_people, given, key_values, segment, show_deleted

PATH = "/services/"
#: seconds a create, update, start or restart may take (image builds and pulls)
LONG = 900.0
COLUMNS = ("name", "image", "state", "health", "ports", "address", "owner")
PORT_COLUMNS = ("name", "bind", "host", "container", "protocol", "served_by", "token", "allowed")


def _ports_text(ports: list[dict[str, Any]]) -> str:
    """``127.0.0.1:8080->80/tcp`` per port, comma-separated."""
    shown = []
    for port in ports:
        bind = f"[{port['bind']}]" if ":" in port["bind"] else port["bind"]
        mark = " (guarded)" if port["served_by"] == "daemon" else ""
        shown.append(f"{bind}:{port['host']}->{port['container']}/{port['protocol']}{mark}")
    return ", ".join(shown)


def show_service(ctx: Context, service: dict[str, Any]) -> None:
    """Print one service: the API's JSON with ``--json``; else readable, ports in a table."""
    if ctx.json:
        ctx.show(service)
        return
    shown = for_people({k: v for k, v in service.items() if k != "ports"})
    ctx.show(shown)
    if service["ports"]:
        ctx.out.write("\n")
        ctx.show([port_row(p) for p in service["ports"]], PORT_COLUMNS)


def port_row(port: dict[str, Any]) -> dict[str, Any]:
    """A port as a table row."""
    return {**port, "allowed": port["allowed_networks"] or "any"}


def progress(text: str) -> None:
    """Say what a long call waits for, on a terminal only (scripts get clean stderr)."""
    if sys.stderr.isatty():
        sys.stderr.write(text + "\n")
        sys.stderr.flush()


def _volume(text: str) -> dict[str, Any]:
    """``SOURCE:TARGET[:ro]`` as a volume object."""
    parts = text.split(":")
    if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] not in ("ro", "rw")):
        raise CliError(f"--volume takes SOURCE:TARGET[:ro], not {text!r}", exit_code=2)
    return {"source": parts[0], "target": parts[1], "read_only": parts[2:] == ["ro"]}


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    """The service fields create and update share, as given on the command line."""
    body: dict[str, Any] = given(
        {
            "memory_limit": args.memory,
            "cpu_limit": args.cpu,
            "network_mode": args.network_mode,
            "restart_policy": args.restart,
            "user": args.user,
            "internal_port": args.port,
        }
    )
    if args.env:
        body["environment"] = key_values(args.env, "--env")
    if args.label:
        body["labels"] = key_values(args.label, "--label")
    if args.volume:
        body["volumes"] = [_volume(v) for v in args.volume]
    if args.network:
        body["networks"] = args.network
    if args.read_only:
        body["read_only"] = True
    if args.cap_drop:
        body["cap_drop"] = args.cap_drop
    if args.cap_add:
        body["cap_add"] = args.cap_add
    if args.entrypoint is not None:
        body["entrypoint"] = shlex.split(args.entrypoint)
    if args.healthcheck is not None:
        body["healthcheck"] = {
            "test": shlex.split(args.healthcheck),
            **given({"interval": args.health_interval}),
        }
    if args.command is not None:
        body["command"] = shlex.split(args.command)
    return body


def _create_body(args: argparse.Namespace) -> dict[str, Any]:
    """The body of ``POST /services/`` from ``service create`` options."""
    body: dict[str, Any] = {"name": args.name, **_settings(args)}
    if args.dockerfile:
        # paths on this host, made absolute: the daemon (on the same host) reads them
        dockerfile = os.path.abspath(args.dockerfile)
        body["dockerfile_path"] = dockerfile
        body["build_context"] = os.path.abspath(args.context or os.path.dirname(dockerfile))
        if args.build_arg:
            body["build_args"] = key_values(args.build_arg, "--build-arg")
    if args.image:
        body["image"] = args.image
    if args.stopped:
        body["start"] = False
    if args.auto_proxy:
        body["auto_proxy"] = True
    return body


async def create(ctx: Context, args: argparse.Namespace) -> int:
    """``service create NAME [IMAGE] ...``."""
    body = _create_body(args)
    progress(f"creating service {args.name} (building or pulling its image if needed) ...")
    show_service(ctx, await ctx.api.post(PATH, body, timeout=LONG))
    return 0


async def create_exposed(ctx: Context, args: argparse.Namespace) -> int:
    """``service create-exposed NAME IMAGE PORT [BIND]``: PORT reachable on BIND:PORT."""
    body = _create_body(args)
    body.setdefault("internal_port", args.exposed_port)
    body["ports"] = [
        {
            "name": str(args.exposed_port),
            "host": args.exposed_port,
            "container": args.exposed_port,
            "bind": args.bind,
        }
    ]
    progress(f"creating service {args.name} exposed on {args.bind}:{args.exposed_port} ...")
    show_service(ctx, await ctx.api.post(PATH, body, timeout=LONG))
    return 0


async def list_services(ctx: Context, args: argparse.Namespace) -> int:
    """``service list``."""
    items = await all_items(ctx, PATH, given({"owner": args.owner}))
    if ctx.json:
        ctx.show(items)
    else:
        ctx.show([{**s, "ports": _ports_text(s["ports"])} for s in items], COLUMNS)
    return 0


async def show(ctx: Context, args: argparse.Namespace) -> int:
    """``service show NAME``."""
    show_service(ctx, await ctx.api.get(PATH + segment(args.name)))
    return 0


async def update(ctx: Context, args: argparse.Namespace) -> int:
    """``service update NAME [--image I] [--env K=V] ...``: recreates the container."""
    body = _settings(args)
    if args.image:
        body["image"] = args.image
    if "environment" in body or args.unset_env:
        current = await ctx.api.get(PATH + segment(args.name))
        environment = {**current["environment"], **body.get("environment", {})}
        for name in args.unset_env or ():
            environment.pop(name, None)
        body["environment"] = environment
    if not body:
        raise CliError("nothing to change: give an option (see --help)", exit_code=2)
    progress(f"updating service {args.name} (its container is recreated) ...")
    path = PATH + segment(args.name)
    show_service(ctx, await ctx.api.request("PATCH", path, body=body, timeout=LONG))
    return 0


async def delete(ctx: Context, args: argparse.Namespace) -> int:
    """``service delete NAME [--force] [--delete-proxy]``."""
    params = {"force": str(args.force).lower(), "delete_proxy": str(args.delete_proxy).lower()}
    await ctx.api.request("DELETE", PATH + segment(args.name), params=params, timeout=LONG)
    return show_deleted(ctx, "service", args.name)


async def _act(ctx: Context, args: argparse.Namespace, action: str) -> int:
    """start, stop, restart."""
    progress(f"{action} service {args.name} ...")
    path = f"{PATH}{segment(args.name)}/{action}"
    service = await ctx.api.post(path, timeout=LONG)
    if ctx.json:
        ctx.show(service)
    else:
        ctx.out.write(f"service {service['name']}: {service['state']}\n")
    return 0


async def start(ctx: Context, args: argparse.Namespace) -> int:
    """``service start NAME``."""
    return await _act(ctx, args, "start")


async def stop(ctx: Context, args: argparse.Namespace) -> int:
    """``service stop NAME``."""
    return await _act(ctx, args, "stop")


async def restart(ctx: Context, args: argparse.Namespace) -> int:
    """``service restart NAME``."""
    return await _act(ctx, args, "restart")


async def logs(ctx: Context, args: argparse.Namespace) -> int:
    """``service logs NAME [LINES] [--timestamps] [--follow]``."""
    lines = args.lines_option if args.lines_option is not None else args.lines
    if lines is not None and lines < 0:
        raise CliError("LINES must be 0 or more", exit_code=2)
    params = given(
        {
            "lines": None if lines is None else str(lines),
            "timestamps": "true" if args.timestamps else None,
        }
    )
    path = f"{PATH}{segment(args.name)}/logs"
    if not args.follow:
        answer = await ctx.api.get(path, params)
        if ctx.json:
            ctx.show(answer)
        else:
            for line in answer["lines"]:
                ctx.out.write(line + "\n")
        return 0

    def deliver(data: bytes) -> None:
        ctx.out.write(data.decode("utf-8", "replace"))
        ctx.out.flush()

    await ctx.api.stream(path + "/follow", params, deliver)
    return 0


async def stats(ctx: Context, args: argparse.Namespace) -> int:
    """``service stats NAME``."""
    answer = await ctx.api.get(f"{PATH}{segment(args.name)}/stats")
    if not ctx.json:
        answer = {
            **answer,
            "memory": f"{answer['memory_usage'] / 1024**2:.1f} MiB of "
            f"{answer['memory_limit'] / 1024**2:.0f} MiB ({answer['memory_percent']}%)",
        }
    ctx.show(answer)
    return 0


async def proxy_create(ctx: Context, args: argparse.Namespace) -> int:
    """``service proxy-create NAME [HOSTNAME] [--no-https] [--no-http]``."""
    body = given({"hostname": args.hostname})
    if args.no_https:
        body["enable_https"] = False
    if args.no_http:
        body["enable_http"] = False
    proxy = await ctx.api.post(f"{PATH}{segment(args.name)}/proxy", body)
    ctx.show(proxy if ctx.json else for_people(proxy))
    return 0


async def cleanup(ctx: Context, args: argparse.Namespace) -> int:
    """``service cleanup [--dry-run]``: orphans removed, interrupted operations finished."""
    path = PATH + "cleanup"
    report = await (ctx.api.get(path) if args.dry_run else ctx.api.post(path, timeout=LONG))
    if ctx.json:
        ctx.show(report)
        return 0
    orphans = [f"{o['name']} ({o['id'][:12]})" for o in report["orphans"]]
    found = {
        "orphan containers": orphans,
        "interrupted operations": report["interrupted"],
        "missing containers": report["missing"],
        "stray containers": report["strays"],
        "running but stopped": report["running_stopped"],
    }
    for label, names in found.items():
        ctx.out.write(f"{label}: {', '.join(names) if names else 'none'}\n")
    verb = "would be fixed by 'service cleanup'" if args.dry_run else "done"
    for line in report["done"]:
        ctx.out.write(f"{verb}: {line}\n")
    for line in report["failed"]:
        ctx.out.write(f"failed: {line}\n")
    return 1 if report["failed"] else 0


# -- the parser ----------------------------------------------------------------------


def _container_options(parser: argparse.ArgumentParser, creating: bool) -> None:
    """Options create, create-exposed and update share."""
    parser.add_argument("--memory", metavar="SIZE", help="memory limit, e.g. 512m, 1g")
    parser.add_argument("--cpu", type=float, metavar="CPUS", help="CPU limit, e.g. 0.5")
    parser.add_argument(
        "--port", type=int, metavar="PORT", help="the port the service listens on (proxies use it)"
    )
    parser.add_argument("--env", action="append", metavar="NAME=VALUE", help="repeatable")
    parser.add_argument("--label", action="append", metavar="NAME=VALUE", help="repeatable")
    parser.add_argument(
        "--volume", action="append", metavar="SOURCE:TARGET[:ro]",
        help="a named volume or a host path under OAUTHPROXY_DOCKER_MOUNT_DIRS; repeatable",
    )  # fmt: skip
    parser.add_argument("--network-mode", choices=("bridge", "host", "none"))
    parser.add_argument("--network", action="append", metavar="NAME", help="extra network")
    parser.add_argument(
        "--restart", choices=("no", "always", "unless-stopped", "on-failure"),
        help="restart policy (default unless-stopped)",
    )  # fmt: skip
    parser.add_argument("--user", metavar="USER[:GROUP]")
    parser.add_argument("--read-only", action="store_true", help="read-only root filesystem")
    parser.add_argument("--cap-drop", action="append", metavar="CAP", help="repeatable")
    parser.add_argument(
        "--cap-add", action="append", metavar="CAP", help="only OAUTHPROXY_DOCKER_CAPABILITIES"
    )
    parser.add_argument(
        "--entrypoint", metavar="WORDS", help="split like a shell, never run by one"
    )
    parser.add_argument("--healthcheck", metavar="WORDS", help="command run in the container")
    parser.add_argument("--health-interval", type=float, metavar="SECONDS")
    if creating:
        parser.add_argument("--dockerfile", metavar="PATH", help="build from this Dockerfile")
        parser.add_argument(
            "--context",
            metavar="DIR",
            help="the build context (default: the Dockerfile's directory)",
        )
        parser.add_argument("--build-arg", action="append", metavar="NAME=VALUE")
        parser.add_argument("--stopped", action="store_true", help="create without starting")
        parser.add_argument(
            "--auto-proxy", action="store_true", help="also create the proxy <name>.<BASE_DOMAIN>"
        )
    parser.add_argument(
        "--command", metavar="WORDS",
        help="the container's command, split like a shell splits it (no shell runs it)",
    )  # fmt: skip


def add_commands(services: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the Docker service and port commands to the ``service`` group."""
    parser = command(services, "create", create, "create and start a Docker service")
    parser.add_argument("name", metavar="NAME", help="a DNS label; also the container's name")
    parser.add_argument("image", metavar="IMAGE", nargs="?", help="e.g. nginx:alpine ('' to build)")
    _container_options(parser, creating=True)

    parser = command(
        services, "create-exposed", create_exposed,
        "create a Docker service whose PORT is reachable on BIND:PORT of the host",
    )  # fmt: skip
    parser.add_argument("name", metavar="NAME")
    parser.add_argument("image", metavar="IMAGE")
    parser.add_argument("exposed_port", type=int, metavar="PORT")
    parser.add_argument("bind", metavar="BIND", nargs="?", default="127.0.0.1",
                        help="127.0.0.1 (default), 0.0.0.0 or an address")  # fmt: skip
    _container_options(parser, creating=True)

    parser = command(services, "list", list_services, "list Docker services and their state")
    parser.add_argument("--owner", help="only services created by this token name")

    parser = command(services, "show", show, "show a Docker service, its container and ports")
    parser.add_argument("name", metavar="NAME")

    parser = command(
        services, "update", update,
        "change a Docker service; its container is recreated (rolled back if it fails)",
    )  # fmt: skip
    parser.add_argument("name", metavar="NAME")
    parser.add_argument("--image", metavar="IMAGE")
    parser.add_argument("--unset-env", action="append", metavar="NAME")
    _container_options(parser, creating=False)

    parser = command(services, "delete", delete, "delete a Docker service and its container")
    parser.add_argument("name", metavar="NAME")
    parser.add_argument("--force", action="store_true", help="also when it is running")
    parser.add_argument(
        "--delete-proxy", action="store_true", help="also delete the proxies made for it"
    )

    for name, handler, text in (
        ("start", start, "start a Docker service"),
        ("stop", stop, "stop a Docker service (it stays stopped)"),
        ("restart", restart, "restart a Docker service"),
        ("stats", stats, "CPU, memory, network, block I/O and processes of a Docker service"),
    ):
        parser = command(services, name, handler, text)
        parser.add_argument("name", metavar="NAME")

    parser = command(services, "logs", logs, "show (or follow) a Docker service's output")
    parser.add_argument("name", metavar="NAME")
    parser.add_argument("lines", metavar="LINES", nargs="?", type=int, help="last N lines")
    parser.add_argument("--lines", dest="lines_option", type=int, metavar="N", help="= LINES")
    parser.add_argument("--timestamps", action="store_true", help="prefix lines with the time")
    parser.add_argument("--follow", "-f", action="store_true", help="keep printing (Ctrl-C ends)")

    parser = command(
        services, "proxy-create", proxy_create,
        "create a proxy HOSTNAME (default NAME.BASE_DOMAIN) for a Docker service",
    )  # fmt: skip
    parser.add_argument("name", metavar="NAME")
    parser.add_argument("hostname", metavar="HOSTNAME", nargs="?")
    parser.add_argument("--no-https", action="store_true", help="HTTP only (no certificate)")
    parser.add_argument("--no-http", action="store_true", help="HTTPS only")

    parser = command(
        services, "cleanup", cleanup,
        "remove orphan containers and repair services (admin); --dry-run only reports",
    )  # fmt: skip
    parser.add_argument("--dry-run", action="store_true", help="report, change nothing")
