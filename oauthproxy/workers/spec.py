"""What a worker process is told when it starts: :class:`WorkerSpec`, and how it is sent.

The supervisor starts each worker as ``python -m oauthproxy.workers.child`` with
the control channel on descriptor :data:`CONTROL_FD` and the listening sockets
after it.  The first frame on the channel is the pickled :class:`WorkerSpec`:
the supervisor's validated :class:`~oauthproxy.config.Config` (a worker reads no
settings of its own, so every process of a daemon runs with the same ones, and
secrets travel neither on the command line nor in the environment), the worker's
number, and which descriptor is which listener.  Both ends are this program, on
a socket pair only they hold, hence pickle.
"""

from __future__ import annotations

import pickle
import socket
import struct

from attrs import frozen

from oauthproxy.config import Config

#: the control channel's descriptor in a worker
CONTROL_FD = 3
#: the first listening socket's descriptor in a worker (the others follow)
FIRST_SOCKET_FD = 4

_LENGTH = struct.Struct("!I")


@frozen
class WorkerSpec:
    """Everything a worker needs to know from its supervisor."""

    index: int
    config: Config
    #: (description, descriptor, address family, shared with the siblings) of each socket
    sockets: tuple[tuple[str, int, int, bool], ...]
    #: seconds a call to the supervisor may take
    timeout: float


def encode_spec(spec: WorkerSpec) -> bytes:
    """The spec as the payload of the first frame."""
    return pickle.dumps(spec, protocol=pickle.HIGHEST_PROTOCOL)


def read_spec(control: socket.socket) -> WorkerSpec:
    """Read the first frame from the (still blocking) control socket."""
    (length,) = _LENGTH.unpack(_read_exactly(control, _LENGTH.size))
    spec = pickle.loads(_read_exactly(control, length))
    if not isinstance(spec, WorkerSpec):
        raise TypeError(f"the supervisor sent {type(spec).__name__}, not a WorkerSpec")
    return spec


def _read_exactly(control: socket.socket, size: int) -> bytes:
    """``size`` bytes, or EOFError if the supervisor closed the channel first."""
    chunks = []
    while size:
        chunk = control.recv(size)
        if not chunk:
            raise EOFError("the supervisor closed the control channel")
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)
