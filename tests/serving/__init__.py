"""Tests for :mod:`oauthproxy.serving`."""
