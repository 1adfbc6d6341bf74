"""Test fixtures: real components (redis-server, Pebble, HAProxy, backends) on loopback."""
