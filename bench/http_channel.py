"""What the inbound HTTP/1.1 channel costs per request, in process, without sockets.

Feeds keep-alive requests to one connection of a ``Site`` on a ``StringTransport``
(a resource answering 13 bytes at once) and prints the CPU per request of

- ``strict``: the daemon's :class:`~oauthproxy.serving.site.StrictSite` (its channel
  parses a head that arrives whole in one go, writes a response head in one string);
- ``stock``: twisted.web's own ``Site`` and ``HTTPChannel`` (line by line, no limits),

for a head as ``wrk`` sends it (one header) and a browser-like one (eleven headers).
Best of ``--reps`` runs of ``--requests`` requests each.  The daemon's full data path is
measured by ``bench/run_gateway.sh``; this isolates the channel.

    .venv/bin/python bench/http_channel.py [--requests N] [--reps R]
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

from oauthproxy.config import Config
from oauthproxy.serving.site import StrictSite

HEADS = {
    "1 header": b"GET /small HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n",
    "11 headers": (
        b"GET /api/items?page=2 HTTP/1.1\r\nHost: app.example.test\r\n"
        b"User-Agent: Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/128.0\r\n"
        b"Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n"
        b"Accept-Language: en-US,en;q=0.5\r\nAccept-Encoding: gzip, deflate, br\r\n"
        b"Connection: keep-alive\r\nCookie: session=abcdef0123456789; theme=dark\r\n"
        b"Upgrade-Insecure-Requests: 1\r\nSec-Fetch-Dest: document\r\n"
        b"Sec-Fetch-Mode: navigate\r\nSec-Fetch-Site: none\r\n\r\n"
    ),
}


class Small(Resource):
    """Answers every request with 13 bytes at once."""

    isLeaf = True

    def render(self, request: Request) -> bytes:
        """The answer."""
        request.setHeader(b"content-type", b"text/plain")
        return b"hello, world\n"


def per_request(site: Any, head: bytes, requests: int, reps: int) -> float:
    """The best CPU microseconds per request over ``reps`` connections of ``requests``."""
    best = float("inf")
    for _ in range(reps):
        protocol = site.buildProtocol(None)
        transport = StringTransport()
        protocol.makeConnection(transport)
        started = time.process_time()
        for i in range(requests):
            protocol.dataReceived(head)
            if i % 100 == 0:
                transport.clear()
        best = min(best, (time.process_time() - started) / requests * 1e6)
        protocol.connectionLost(None)
    return best


def main() -> None:
    """Print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    reactor = MemoryReactorClock()
    sites = {
        "strict": StrictSite(Small(), Config(redis_url="redis://127.0.0.1"), reactor),
        "stock": Site(Small(), reactor=reactor),
    }
    print("| head | " + " | ".join(f"{name} us/req" for name in sites) + " |")
    print("|---|" + "---:|" * len(sites))
    for label, head in HEADS.items():
        costs = [per_request(site, head, args.requests, args.reps) for site in sites.values()]
        print(f"| {label} | " + " | ".join(f"{cost:.1f}" for cost in costs) + " |")


if __name__ == "__main__":
    main()
