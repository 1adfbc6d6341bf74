"""Tests of oauthproxy.workers."""
