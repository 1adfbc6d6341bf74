"""The OAuth 2.1 authorization server (GitHub upstream) and token verification.

Grant, PKCE, token, registration and metadata logic are pure functions over
values; the Klein resource and the GitHub client only glue them to I/O.

- :mod:`~oauthproxy.oauth.records`: the frozen records (clients, codes, token families…)
- :mod:`~oauthproxy.oauth.errors`: RFC 6749/6750/7591/8707 error objects
- :mod:`~oauthproxy.oauth.pkce`, :mod:`~oauthproxy.oauth.redirects`: PKCE S256, redirect URIs
- :mod:`~oauthproxy.oauth.authorize`: the ``/authorize`` decision and its responses
- :mod:`~oauthproxy.oauth.access`: allowlists, scopes, RFC 8707 resources and audience
- :mod:`~oauthproxy.oauth.grants`: client authentication, code and refresh grants
- :mod:`~oauthproxy.oauth.tokens`: JWT access tokens, JWKS, introspection answers
- :mod:`~oauthproxy.oauth.registration`, :mod:`~oauthproxy.oauth.cimd`: DCR and CIMD clients
- :mod:`~oauthproxy.oauth.consent`: consent cookie, CSRF, GitHub state, consent page
- :mod:`~oauthproxy.oauth.metadata`, :mod:`~oauthproxy.oauth.challenges`: discovery and 401/403
- :mod:`~oauthproxy.oauth.github`: the GitHub upstream client
- :mod:`~oauthproxy.oauth.proxies`: per-proxy settings (resource URI, GitHub app, documents)
- :mod:`~oauthproxy.oauth.limits`: per-source rate limits of the anonymous endpoints
- :mod:`~oauthproxy.oauth.status`: whether the server works, and what to set if not

The running service:

- :mod:`~oauthproxy.oauth.server` (+ ``resource_tokens``, ``resource_registration``,
  ``resource_verify``, ``resource_cimd``, ``resource_http``): the Klein resource
  ``OAuthServer``
- :mod:`~oauthproxy.oauth.resource_setup`: ``build_oauth_server`` for the composition root
- :mod:`~oauthproxy.oauth.keys`: the signing keys shared through the store, rotation
- :mod:`~oauthproxy.oauth.verifier`: ``SnapshotVerifier``, in-memory token verification
- :mod:`~oauthproxy.oauth.revocation`: revocation, reaping, ``ReaperService``
"""
