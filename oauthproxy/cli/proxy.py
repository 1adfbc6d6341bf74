"""``oauthproxyctl proxy``: create, list, show, update and delete proxies (``/proxy/targets/``).

Mirrors the seed's ``proxy-create HOSTNAME TARGET_URL``, ``proxy-list``, ``proxy-show``,
``proxy-update`` and ``proxy-delete``, plus the route filtering of one proxy
(``proxy routes``, ``proxy route-mode``, ``proxy route-enable``/``route-disable``).
Options left out are not sent: the API's defaults apply on create, and update
changes only what is given.
"""

from __future__ import annotations

import argparse
from typing import Any
from urllib.parse import urlencode

from oauthproxy.acme.autocert import is_public_name
from oauthproxy.cli.context import CliError, Context, command, group
from oauthproxy.cli.paging import (
    all_items,
    for_people,
    given,
    key_values,
    segment,
    show_deleted,
)

PATH = "/proxy/targets/"
COLUMNS = (
    "hostname",
    "target_url",
    "enable_http",
    "enable_https",
    "cert_name",
    "staging",
    "route_mode",
    "owner",
)


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    """The proxy fields given on the command line, as the API's JSON."""
    body = given(
        {
            "target_url": getattr(args, "target_url", None),
            "enable_http": args.http,
            "enable_https": args.https,
            "preserve_host_header": args.preserve_host,
            "staging": args.staging,
            "verify_upstream_tls": args.verify_upstream_tls,
            "connect_timeout": args.connect_timeout,
            "read_timeout": args.read_timeout,
            "route_mode": args.route_mode,
        }
    )
    if args.cert_name is not None:
        body["cert_name"] = args.cert_name or None
    if args.headers is not None:
        body["custom_request_headers"] = key_values(args.headers, "--header")
    if args.response_headers is not None:
        body["custom_response_headers"] = key_values(args.response_headers, "--response-header")
    if args.upstream_ca is not None:
        body["upstream_ca_pem"] = _read_pem(args.upstream_ca) if args.upstream_ca else None
    return body


def _read_pem(path: str) -> str:
    """The text of the PEM file at ``path`` (a usage error if it cannot be read)."""
    try:
        with open(path, encoding="ascii") as f:
            return f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise CliError(f"--upstream-ca: cannot read {path}: {e}", exit_code=2) from None


def show_proxy(ctx: Context, proxy: Any) -> None:
    """Print one proxy: the API's JSON with ``--json``, else readable times and no PEM text."""
    ctx.show(proxy if ctx.json else for_people(proxy, ("upstream_ca_pem",)))


def certificate_note(proxy: Any) -> str | None:
    """What happens about a new HTTPS proxy's certificate, for people (None: HTTP only)."""
    if not proxy.get("enable_https"):
        return None
    host = proxy["hostname"]
    fallback = "the daemon serves its self-signed fallback certificate (browsers warn)"
    why_not = is_public_name(host)
    if why_not is not None:
        return (
            f"note: no public CA certifies {host} ({why_not}), so {fallback}; "
            "for a local trial create the proxy with --no-https (plain HTTP)"
        )
    return (
        f"note: a certificate for {host} is being ordered in the background; until it is "
        f"ready {fallback}; follow it with 'oauthproxyctl cert wait --host {host}' "
        "(it needs the name to resolve to this daemon and port 80 to reach it; "
        "for a local trial use --no-https)"
    )


async def create(ctx: Context, args: argparse.Namespace) -> int:
    """``proxy create HOSTNAME TARGET_URL [options]``, saying what happens about HTTPS."""
    body = {"hostname": args.hostname, **_settings(args)}
    proxy = await ctx.api.post(PATH, body)
    show_proxy(ctx, proxy)
    note = None if ctx.json else certificate_note(proxy)
    if note is not None:
        ctx.out.write("\n" + note + "\n")
    return 0


async def list_proxies(ctx: Context, args: argparse.Namespace) -> int:
    """``proxy list``: every proxy the token may see."""
    filters = given({"owner": args.owner})
    ctx.show(await all_items(ctx, PATH, filters), COLUMNS)
    return 0


async def show(ctx: Context, args: argparse.Namespace) -> int:
    """``proxy show HOSTNAME``."""
    show_proxy(ctx, await ctx.api.get(PATH + segment(args.hostname)))
    return 0


async def update(ctx: Context, args: argparse.Namespace) -> int:
    """``proxy update HOSTNAME [options]``: change only the options given."""
    body = _settings(args)
    if not body:
        raise CliError("nothing to change: give at least one option (see --help)", exit_code=2)
    show_proxy(ctx, await ctx.api.request("PATCH", PATH + segment(args.hostname), body=body))
    return 0


async def delete(ctx: Context, args: argparse.Namespace) -> int:
    """``proxy delete HOSTNAME [--delete-routes] [--delete-certificates]``."""
    path = PATH + segment(args.hostname)
    flags = given({"delete_routes": args.delete_routes, "delete_certificates": args.delete_certs})
    found = await ctx.api.get(path + "/dependents") if flags else None
    await ctx.api.delete(path + ("?" + urlencode({k: "true" for k in flags}) if flags else ""))
    if found is None or ctx.json:
        return show_deleted(ctx, "proxy", args.hostname.lower())
    ctx.out.write(f"deleted proxy {found['hostname']}\n")
    for route in found["routes"] if args.delete_routes else ():
        verb = "deleted route" if route["action"] == "delete" else "unscoped route"
        ctx.out.write(f"{verb} {route['route_id']}\n")
    for cert in found["certificates"] if args.delete_certs else ():
        if cert["action"] == "delete":
            ctx.out.write(f"deleted certificate {cert['cert_name']}\n")
        else:
            ctx.out.write(f"kept certificate {cert['cert_name']}: {cert['reason']}\n")
    return 0


async def dependents(ctx: Context, args: argparse.Namespace) -> int:
    """``proxy dependents HOSTNAME``: what ``delete`` with its options would take along."""
    found = await ctx.api.get(PATH + segment(args.hostname) + "/dependents")
    if ctx.json:
        ctx.show(found)
        return 0
    rows = [
        {"kind": "route", "name": r["route_id"], "on_delete": r["action"]} for r in found["routes"]
    ]
    rows += [
        {
            "kind": "certificate",
            "name": c["cert_name"],
            "on_delete": c["action"],
            "why": c["reason"],
        }
        for c in found["certificates"]
    ]
    ctx.show(rows, ("kind", "name", "on_delete", "why"))
    return 0


async def routes(ctx: Context, args: argparse.Namespace) -> int:
    """``proxy routes HOSTNAME``: route_mode, the lists, and the routes that apply."""
    ctx.show(await ctx.api.get(f"{PATH}{segment(args.hostname)}/routes"))
    return 0


async def route_mode(ctx: Context, args: argparse.Namespace) -> int:
    """``proxy route-mode HOSTNAME MODE``."""
    path = f"{PATH}{segment(args.hostname)}/routes"
    ctx.show(await ctx.api.put(path, {"route_mode": args.mode}))
    return 0


async def route_enable(ctx: Context, args: argparse.Namespace) -> int:
    """``proxy route-enable HOSTNAME ROUTE_ID``."""
    path = f"{PATH}{segment(args.hostname)}/routes/{segment(args.route_id)}/enable"
    ctx.show(await ctx.api.post(path))
    return 0


async def route_disable(ctx: Context, args: argparse.Namespace) -> int:
    """``proxy route-disable HOSTNAME ROUTE_ID``."""
    path = f"{PATH}{segment(args.hostname)}/routes/{segment(args.route_id)}/disable"
    ctx.show(await ctx.api.post(path))
    return 0


def _settings_options(parser: argparse.ArgumentParser) -> None:
    """The options create and update share (all optional; left out = not sent)."""
    switch = argparse.BooleanOptionalAction
    parser.add_argument("--http", action=switch, help="serve plain HTTP (default on)")
    parser.add_argument(
        "--https",
        action=switch,
        help="serve HTTPS with an ACME certificate (default on; --no-https for a local trial)",
    )
    parser.add_argument(
        "--preserve-host",
        action=switch,
        help="send the client's Host header upstream (default on)",
    )
    parser.add_argument(
        "--staging", action=switch, help="use the ACME staging directory (default off)"
    )
    parser.add_argument(
        "--production-cert",
        dest="staging",
        action="store_false",
        default=None,
        help="use the ACME production directory (same as --no-staging)",
    )
    parser.add_argument(
        "--verify-upstream-tls",
        action=switch,
        help="verify the upstream's certificate (default on)",
    )
    parser.add_argument("--cert-name", metavar="NAME", help="certificate to serve ('' = any)")
    parser.add_argument(
        "--header",
        dest="headers",
        action="append",
        metavar="NAME=VALUE",
        help="request header to add upstream (repeat; on update replaces the set)",
    )
    parser.add_argument(
        "--response-header",
        dest="response_headers",
        action="append",
        metavar="NAME=VALUE",
        help="response header to add (repeat; on update replaces the set)",
    )
    parser.add_argument("--connect-timeout", type=float, metavar="SECONDS")
    parser.add_argument("--read-timeout", type=float, metavar="SECONDS")
    parser.add_argument(
        "--upstream-ca", metavar="PEM_FILE", help="CA certificates for the upstream ('' = system)"
    )
    parser.add_argument(
        "--route-mode",
        choices=("all", "selective", "none"),
        help="which routes apply (see 'proxy routes')",
    )


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``proxy create|list|show|update|delete|routes|route-mode|route-enable|route-disable``."""
    sub = group(commands, "proxy", "manage proxies (virtual hosts) at /proxy/targets/")

    parser = command(sub, "create", create, "create a proxy: HOSTNAME → TARGET_URL")
    parser.add_argument("hostname", metavar="HOSTNAME", help="e.g. api.example.com")
    parser.add_argument("target_url", metavar="TARGET_URL", help="e.g. http://127.0.0.1:8080")
    _settings_options(parser)

    parser = command(sub, "list", list_proxies, "list proxies (yours; all with the admin token)")
    parser.add_argument("--owner", help="only proxies created by this token name")

    parser = command(sub, "show", show, "show one proxy")
    parser.add_argument("hostname", metavar="HOSTNAME")

    parser = command(sub, "update", update, "change a proxy (only the options given)")
    parser.add_argument("hostname", metavar="HOSTNAME")
    parser.add_argument("--target-url", metavar="URL", help="new upstream URL")
    _settings_options(parser)

    parser = command(sub, "delete", delete, "delete a proxy (see 'proxy dependents')")
    parser.add_argument("hostname", metavar="HOSTNAME", help="the proxy's hostname")
    parser.add_argument(
        "--delete-routes",
        action="store_true",
        default=None,
        help="also delete the routes scoped to this proxy alone",
    )
    parser.add_argument(
        "--delete-certificates",
        dest="delete_certs",
        action="store_true",
        default=None,
        help="also delete the certificates that serve only this proxy",
    )

    parser = command(sub, "dependents", dependents, "show what deleting a proxy takes along")
    parser.add_argument("hostname", metavar="HOSTNAME", help="the proxy's hostname")

    parser = command(sub, "routes", routes, "show which routes apply to a proxy")
    parser.add_argument("hostname", metavar="HOSTNAME")

    parser = command(sub, "route-mode", route_mode, "set a proxy's route mode")
    parser.add_argument("hostname", metavar="HOSTNAME")
    parser.add_argument("mode", metavar="MODE", choices=("all", "selective", "none"))

    for name, handler, verb in (
        ("route-enable", route_enable, "enable"),
        ("route-disable", route_disable, "disable"),
    ):
        parser = command(sub, name, handler, f"{verb} one route for a proxy")
        parser.add_argument("hostname", metavar="HOSTNAME")
        parser.add_argument("route_id", metavar="ROUTE_ID")
