"""The OAuth 2.1 authorization server (GitHub upstream) and token verification.

Grant, PKCE, token, registration and metadata logic are pure functions over
values; the Klein resource and the GitHub client only glue them to I/O.
"""
