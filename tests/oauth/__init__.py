"""Tests for oauthproxy.oauth."""
