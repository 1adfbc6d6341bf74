"""Tests for oauthproxy.gateway."""
