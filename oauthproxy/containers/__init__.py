"""Docker services with port allocation, and named external services."""
