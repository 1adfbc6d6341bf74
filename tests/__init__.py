"""oauthproxy's trial tests; ``tests/integration`` runs real components on loopback."""
