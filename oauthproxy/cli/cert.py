"""``oauthproxyctl cert``: ACME certificates through ``/certificates/``.

``cert create NAME DOMAIN`` and ``cert create-multi NAME A,B,C`` record a certificate
that the daemon orders in the background; ``cert wait NAME`` (or ``--wait`` on
create, renew and convert) polls it until the order has an outcome, with a progress
indicator on stderr when stderr is a terminal, and exits 1 with the reason when it
failed; ``cert wait --host HOSTNAME`` waits for whichever certificate covers a proxy's
name (the one the daemon orders for a new HTTPS proxy; :func:`wait_for_hostname`).
``cert attach HOSTNAME NAME`` is the seed's ``proxy-cert-attach``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Awaitable, Callable, Mapping
from typing import IO, Any, Literal

from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater

from oauthproxy.cli.context import CliError, Context, command, group
from oauthproxy.cli.output import utc
from oauthproxy.cli.paging import all_items, comma_list, segment, show_deleted

#: seconds between polls while waiting
WAIT_INTERVAL = 2.0
#: seconds ``wait`` gives an order before giving up (orders time out after 90 s per attempt)
WAIT_TIMEOUT = 300.0
_SPINNER = "|/-\\"
_COLUMNS = ("cert_name", "status", "domains", "issuer", "expires", "owner")

Outcome = Literal["ready", "failed", "waiting"]


def _path(cert_name: str) -> str:
    """The API path of ``cert_name``."""
    return f"/certificates/{segment(cert_name)}"


def for_people(record: Mapping[str, Any]) -> dict[str, Any]:
    """A certificate record without PEMs, times readable."""
    shown = {k: v for k, v in record.items() if not k.endswith("_pem")}
    for name in ("not_before", "not_after", "retry_at", "created_at", "updated_at"):
        if name in shown:
            shown[name] = utc(shown[name])
    return shown


def row(record: Mapping[str, Any]) -> dict[str, Any]:
    """A certificate as a table row."""
    return {**record, "expires": utc(record.get("not_after"))}


def outcome(record: Mapping[str, Any], baseline: Mapping[str, Any] | None) -> Outcome:
    """Whether the order ``record`` reflects has ended.

    Without ``baseline`` (plain ``wait``): ready or failed by status.  After a renewal
    or conversion whose starting record is ``baseline``: only a later update counts;
    a failed renewal keeps status ``ready`` and sets ``error``.
    """
    status = record.get("status")
    if baseline is None:
        return "ready" if status == "ready" else "failed" if status == "failed" else "waiting"
    if float(record.get("updated_at") or 0) <= float(baseline.get("updated_at") or 0):
        return "waiting"
    if status == "failed" or (status == "ready" and record.get("error")):
        return "failed"
    return "ready" if status == "ready" else "waiting"


def failure_message(record: Mapping[str, Any]) -> str:
    """One line: which certificate failed, why, and when it is retried."""
    name = record.get("cert_name")
    reason = " ".join(str(record.get("error") or "no reason recorded").split())
    text = f"certificate {name} failed: {reason}"
    if record.get("status") == "ready":
        text += " (the current certificate is still served)"
    retry = utc(record.get("retry_at"))
    return text + (f"; next attempt at {retry}" if retry else "")


async def wait_for_outcome(
    fetch: Callable[[], Awaitable[Any]],
    clock: IReactorTime,
    progress: IO[str],
    baseline: Mapping[str, Any] | None = None,
    interval: float = WAIT_INTERVAL,
    timeout: float = WAIT_TIMEOUT,
) -> dict[str, Any]:
    """Poll ``fetch()`` until the order has an outcome; the ready record.

    Shows a spinner on ``progress`` only when it is a terminal.  Raises
    :class:`CliError` (exit 1) for a failed order or when ``timeout`` passes.
    """
    tty = progress.isatty()
    polls = max(int(timeout / interval), 1)
    record: dict[str, Any] = {}
    try:
        for turn in range(polls + 1):
            record = await fetch()
            state = outcome(record, baseline)
            if state == "ready":
                return record
            if state == "failed":
                raise CliError(failure_message(record))
            if turn == polls:
                break
            if tty:
                frame = _SPINNER[turn % len(_SPINNER)]
                progress.write(f"\r{frame} {record.get('cert_name')}: {record.get('status')}")
                progress.flush()
            await deferLater(clock, interval, lambda: None)
    finally:
        if tty:
            progress.write("\r\x1b[K")
            progress.flush()
    raise CliError(
        f"certificate {record.get('cert_name')} is still {record.get('status')} "
        f"after {timeout:g} s (the daemon keeps trying; run 'cert wait' again)"
    )


def report_ready(ctx: Context, record: Mapping[str, Any]) -> None:
    """The final line for a ready certificate (the record with --json)."""
    if ctx.json:
        ctx.show(dict(record))
        return
    ctx.out.write(
        f"certificate {record.get('cert_name')} is ready: "
        f"{', '.join(record.get('domains', []))} "
        f"(issuer {record.get('issuer')}, expires {utc(record.get('not_after'))})\n"
    )


async def covering_certificate(ctx: Context, hostname: str) -> dict[str, Any]:
    """The certificate that decides ``hostname``'s outcome: ready first, then pending, failed.

    Before any certificate covers the name (the daemon has not requested it yet) a
    stand-in ``pending`` record is returned, so that waiting goes on.
    """
    items = await all_items(ctx, "/certificates/", {"covers": hostname})
    for status in ("ready", "pending", "failed"):
        for item in items:
            if item.get("status") == status:
                return item
    return {"cert_name": f"for {hostname}", "status": "pending", "domains": [hostname]}


async def wait_for_hostname(
    ctx: Context, hostname: str, interval: float = WAIT_INTERVAL, timeout: float = WAIT_TIMEOUT
) -> dict[str, Any]:
    """Wait until a certificate covering ``hostname`` is ready (e.g. after ``proxy create``).

    Progress on stderr when it is a terminal; :class:`CliError` when it failed or
    ``timeout`` passed.  Prints nothing itself (see :func:`report_ready`).
    """
    return await wait_for_outcome(
        lambda: covering_certificate(ctx, hostname),
        ctx.reactor,
        sys.stderr,
        None,
        interval=interval,
        timeout=timeout,
    )


async def _wait_and_report(
    ctx: Context, args: argparse.Namespace, cert_name: str, baseline: Mapping[str, Any] | None
) -> int:
    """Wait for ``cert_name`` and print the outcome (the record with --json)."""
    record = await wait_for_outcome(
        lambda: ctx.api.get(_path(cert_name)),
        ctx.reactor,
        sys.stderr,
        baseline,
        interval=args.interval,
        timeout=args.timeout,
    )
    report_ready(ctx, record)
    return 0


async def _created(ctx: Context, args: argparse.Namespace, domains: dict[str, Any]) -> int:
    """Create with ``domains`` (``domain`` or ``domains``), then show or wait."""
    body: dict[str, Any] = {"cert_name": args.name, **domains, "staging": args.staging}
    if args.email:
        body["email"] = args.email
    record = await ctx.api.post("/certificates/", body)
    if args.wait:
        return await _wait_and_report(ctx, args, args.name, None)
    ctx.show(record if ctx.json else for_people(record))
    return 0


async def create(ctx: Context, args: argparse.Namespace) -> int:
    """Create a certificate for one name."""
    return await _created(ctx, args, {"domain": args.domain})


async def create_multi(ctx: Context, args: argparse.Namespace) -> int:
    """Create one certificate for several comma-separated names."""
    names = comma_list(args.domains)
    if not names:
        raise CliError("give at least one domain (comma-separated)", exit_code=2)
    return await _created(ctx, args, {"domains": names})


async def list_certificates(ctx: Context, args: argparse.Namespace) -> int:
    """Every certificate the token may see (all pages)."""
    items = await all_items(ctx, "/certificates/", {"status": args.status} if args.status else {})
    ctx.show(items if ctx.json else [row(item) for item in items], _COLUMNS)
    return 0


async def show(ctx: Context, args: argparse.Namespace) -> int:
    """One certificate; ``--pem`` prints its chain, ``--private-key`` its chain and key."""
    params = {"include_private_key": "true"} if args.private_key else None
    record = await ctx.api.get(_path(args.name), params)
    if ctx.json:
        ctx.show(record)
    elif args.pem or args.private_key:
        ctx.out.write(record.get("fullchain_pem") or "")
        if args.private_key:
            ctx.out.write(record.get("private_key_pem") or "")
    else:
        ctx.show(for_people(record))
    return 0


async def renew(ctx: Context, args: argparse.Namespace) -> int:
    """Order the certificate again now."""
    before = await ctx.api.post(_path(args.name) + "/renew")
    if args.wait:
        return await _wait_and_report(ctx, args, args.name, before)
    ctx.show(before if ctx.json else f"renewal of {args.name} started")
    return 0


async def convert(ctx: Context, args: argparse.Namespace) -> int:
    """Move the certificate to production (default) or staging and order it there."""
    moved = await ctx.api.post(_path(args.name) + "/convert", {"staging": args.staging})
    if args.wait:
        return await _wait_and_report(ctx, args, args.name, moved)
    which = "staging" if args.staging else "production"
    ctx.show(moved if ctx.json else f"{args.name} is being ordered from the {which} directory")
    return 0


async def delete(ctx: Context, args: argparse.Namespace) -> int:
    """Delete the certificate."""
    await ctx.api.delete(_path(args.name))
    return show_deleted(ctx, "certificate", args.name)


async def wait(ctx: Context, args: argparse.Namespace) -> int:
    """Wait until the certificate is ready (exit 0) or failed (exit 1, with the reason)."""
    if (args.name is None) == (args.host is None):
        raise CliError("give a certificate NAME or --host HOSTNAME", exit_code=2)
    if args.host is not None:
        report_ready(ctx, await wait_for_hostname(ctx, args.host, args.interval, args.timeout))
        return 0
    return await _wait_and_report(ctx, args, args.name, None)


async def attach(ctx: Context, args: argparse.Namespace) -> int:
    """Serve the certificate for the proxy's hostname."""
    hostname = segment(args.hostname)
    proxy = await ctx.api.post(f"/proxy/targets/{hostname}/cert", {"cert_name": args.name})
    if ctx.json:
        ctx.show(proxy)
    else:
        ctx.show(f"{args.hostname} now serves certificate {args.name}")
    return 0


async def detach(ctx: Context, args: argparse.Namespace) -> int:
    """Let the proxy serve any certificate covering its hostname again."""
    hostname = segment(args.hostname)
    proxy = await ctx.api.delete(f"/proxy/targets/{hostname}/cert")
    ctx.show(proxy if ctx.json else f"{args.hostname} serves any certificate covering it")
    return 0


def _wait_options(parser: argparse.ArgumentParser, flag: bool) -> None:
    """``--timeout``/``--interval`` (and ``--wait`` when ``flag``)."""
    if flag:
        parser.add_argument("--wait", action="store_true", help="wait for the order's outcome")
    parser.add_argument(
        "--timeout", type=float, default=WAIT_TIMEOUT, help="seconds to wait (default 300)"
    )
    parser.add_argument(
        "--interval", type=float, default=WAIT_INTERVAL, help="seconds between polls (default 2)"
    )


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``cert`` group."""
    certs = group(commands, "cert", "ACME certificates")
    for name, handler, what, help in (
        ("create", create, "domain", "create a certificate for DOMAIN (ordered in the background)"),
        ("create-multi", create_multi, "domains", "create one certificate for DOMAIN,DOMAIN,..."),
    ):
        parser = command(certs, name, handler, help)
        parser.add_argument("name", help="certificate name")
        parser.add_argument(what, metavar=what.upper(), help="DNS name(s)")
        parser.add_argument("--email", help="ACME contact (default: the daemon's ADMIN_EMAIL)")
        parser.add_argument("--staging", action="store_true", help="use the staging directory")
        _wait_options(parser, flag=True)
    parser = command(certs, "list", list_certificates, "list certificates")
    parser.add_argument("--status", choices=("pending", "ready", "failed"))
    parser = command(certs, "show", show, "show a certificate")
    parser.add_argument("name")
    parser.add_argument("--pem", action="store_true", help="print the PEM chain")
    parser.add_argument(
        "--private-key", action="store_true", help="print chain and private key (admin token)"
    )
    parser = command(certs, "renew", renew, "renew a certificate now")
    parser.add_argument("name")
    _wait_options(parser, flag=True)
    parser = command(
        certs, "convert", convert, "move a certificate to production (or --staging) and reorder it"
    )
    parser.add_argument("name")
    parser.add_argument("--staging", action="store_true", help="convert to staging instead")
    _wait_options(parser, flag=True)
    parser = command(certs, "delete", delete, "delete a certificate")
    parser.add_argument("name")
    parser = command(certs, "wait", wait, "wait until a certificate is ready or failed")
    parser.add_argument("name", nargs="?", help="certificate name")
    parser.add_argument(
        "--host", metavar="HOSTNAME", help="instead: any certificate covering HOSTNAME"
    )
    _wait_options(parser, flag=False)
    parser = command(certs, "attach", attach, "serve a certificate for a proxy's hostname")
    parser.add_argument("hostname")
    parser.add_argument("name", metavar="CERT_NAME")
    parser = command(certs, "detach", detach, "let a proxy serve any certificate covering it")
    parser.add_argument("hostname")
