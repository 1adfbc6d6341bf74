"""Test fixtures that start real components (redis-server, Pebble, HAProxy, backends) on loopback."""
