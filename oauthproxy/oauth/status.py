"""Whether this daemon's authorization server works, and what to set when it does not.

Without an issuer (``OAUTHPROXY_OAUTH_ISSUER`` or ``BASE_DOMAIN``) there is no
authorization server, and without a GitHub OAuth app nobody can log in.  Both used to be
silent: ``oauth`` proxies were accepted and then refused every token.  The composition
root keeps an :class:`OAuthStatus` current; the daemon logs it at start, ``/health`` and
``/oauth/health`` show it, and the admin API refuses to protect a proxy or route with
OAuth while :meth:`OAuthStatus.problem` names something to fix (issue 11).  A server
still starting (the first second or so) is no problem: it is configured and coming.
"""

from __future__ import annotations

from typing import Literal

from attrs import frozen

OAuthState = Literal["off", "starting", "ready", "failed"]

#: what an operator sets to turn the server on
SETTINGS_HINT = (
    "set OAUTHPROXY_OAUTH_ISSUER (or BASE_DOMAIN) and GITHUB_CLIENT_ID/GITHUB_CLIENT_SECRET,"
    " then restart"
)


@frozen
class OAuthStatus:
    """The authorization server's state in this daemon."""

    state: OAuthState
    issuer: str | None = None
    #: whether the global GitHub OAuth app is configured
    github_app: bool = False
    #: why it failed to start (``failed``)
    detail: str = ""
    #: dynamic client registration: "open", "token" or "closed" (``OAUTH_REGISTRATION``)
    registration: str = "open"

    def json(self) -> dict[str, object]:
        """The ``oauth`` entry of ``/health``."""
        return {
            "state": self.state,
            "issuer": self.issuer,
            "github_app": self.github_app,
            "problem": self.problem(),
        }

    def problem(self, own_github_app: bool = False) -> str | None:
        """What keeps OAuth from working (None: nothing), phrased as what to do.

        ``own_github_app``: the proxy in question has a GitHub app of its own, so the
        missing global one does not matter for it.
        """
        if self.state == "off":
            return f"OAuth is off on this daemon: {SETTINGS_HINT}"
        if self.state == "failed":
            return f"the OAuth authorization server failed to start ({self.detail}); see the log"
        if not (self.github_app or own_github_app):
            return (
                "no GitHub OAuth app is configured, so nobody could log in: set "
                "GITHUB_CLIENT_ID and GITHUB_CLIENT_SECRET (or give this proxy its own app "
                "first: oauthproxyctl proxy github-oauth set)"
            )
        return None
