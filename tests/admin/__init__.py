"""Tests for oauthproxy.admin."""
