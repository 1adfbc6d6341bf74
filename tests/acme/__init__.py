"""Tests for oauthproxy.acme."""
