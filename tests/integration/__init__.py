"""Integration tests: real daemons and components on loopback, started and stopped by the tests."""
