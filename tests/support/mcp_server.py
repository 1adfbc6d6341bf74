"""A real MCP server (the ``mcp`` SDK's ``MCPServer``, streamable HTTP) for integration tests.

Run as ``python -m tests.support.mcp_server <port>``: it serves ``/mcp`` on
``127.0.0.1:<port>`` with three tools: ``add``, ``whoami`` (the ``X-Auth-User`` header the
gateway set, so a test sees the identity reach the backend) and ``saw_authorization``
(whether the client's token reached the server, which it must not, MCP-19).
DNS-rebinding protection allows the proxied host name the tests use (``mcp.test``),
since the gateway keeps the client's ``Host``.  :func:`start_mcp_server` runs it as a
subprocess for a trial test and stops it by PID in a cleanup.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
from typing import Any

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.transport_security import TransportSecuritySettings
from twisted.internet import reactor, task
from twisted.internet.protocol import ProcessProtocol
from twisted.trial.unittest import TestCase

from tests.support.daemon import ROOT, free_port
from tests.support.processes import tied_to_test

_STARTUP = 30.0


def serve(port: int) -> None:
    """Serve the MCP server on loopback until killed (runs in the subprocess)."""
    server = MCPServer("oauthproxy-test")

    @server.tool()
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    @server.tool()
    def whoami(ctx: Context) -> str:
        """The user the gateway says made this call (``X-Auth-User``)."""
        request: Any = ctx.request_context.request
        headers = getattr(request, "headers", {}) or {}
        return str(headers.get("x-auth-user", ""))

    @server.tool()
    def saw_authorization(ctx: Context) -> str:
        """``yes`` if the request reaching the server carried an Authorization header."""
        request: Any = ctx.request_context.request
        headers = getattr(request, "headers", {}) or {}
        return "yes" if "authorization" in headers else "no"

    security = TransportSecuritySettings(
        allowed_hosts=["127.0.0.1:*", "localhost:*", "mcp.test", "mcp.test:*"],
        allowed_origins=[],
    )
    server.run(
        "streamable-http",
        host="127.0.0.1",
        port=port,
        transport_security=security,
    )


class _Output(ProcessProtocol):
    """Keeps what the server printed (shown when it fails to start)."""

    def __init__(self) -> None:
        self.output: list[bytes] = []
        self.ended = False

    def outReceived(self, data: bytes) -> None:
        """Keep stdout."""
        self.output.append(data)

    def errReceived(self, data: bytes) -> None:
        """Keep stderr."""
        self.output.append(data)

    def processEnded(self, reason: Any) -> None:
        """Note the exit."""
        self.ended = True


def _accepting(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


async def start_mcp_server(test: TestCase) -> str:
    """Start the server for ``test`` (killed by PID in a cleanup); its ``http://…/mcp`` URL."""
    port = free_port()
    protocol = _Output()
    env = {**os.environ, "PYTHONPATH": ROOT}
    argv = tied_to_test([sys.executable, "-m", "tests.support.mcp_server", str(port)])
    process: Any = reactor.spawnProcess(
        protocol,
        argv[0],
        argv,
        env=env,
        path=ROOT,
    )

    async def stop() -> None:
        if not protocol.ended:
            os.kill(process.pid, signal.SIGTERM)
        for _ in range(100):
            if protocol.ended:
                return
            await task.deferLater(reactor, 0.05, lambda: None)
        os.kill(process.pid, signal.SIGKILL)

    test.addCleanup(stop)
    started = reactor.seconds()
    while not _accepting(port):
        if protocol.ended or reactor.seconds() - started > _STARTUP:
            raise AssertionError(
                "the MCP server did not start: " + b"".join(protocol.output).decode()[-2000:]
            )
        await task.deferLater(reactor, 0.1, lambda: None)
    return f"http://127.0.0.1:{port}/mcp"


if __name__ == "__main__":
    serve(int(sys.argv[1]))
