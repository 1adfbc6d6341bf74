"""Tests for oauthproxy.storage."""
