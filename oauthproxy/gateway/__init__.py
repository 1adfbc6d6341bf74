"""The data plane: listeners, host dispatch, routing, guard, forwarding, tunnels.

Nothing here talks to Redis: the routing table and the certificate map are
in-memory snapshots fed by :class:`~oauthproxy.interfaces.ISnapshotSource`.
"""
