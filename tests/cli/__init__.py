"""Tests for oauthproxy.cli."""
