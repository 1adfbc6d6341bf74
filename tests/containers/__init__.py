"""Tests of :mod:`oauthproxy.containers`: pure cores, lifecycle on twins, engine on dockerd."""
