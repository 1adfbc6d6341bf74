"""Prometheus metrics of one daemon: :class:`~oauthproxy.metrics.registry.Metrics`.

The instruments live in small modules fed at existing seams, each by one hook
the composition root (:mod:`oauthproxy.tap`) connects: :mod:`.traffic` (the
gateway's access-log hook, the admin listener's OAuth answers), :mod:`.tls`
(the certificate map's per-connection hook), :mod:`.state` (live state read at
scrape time, the mirror's events, the ACME service's attempts).  ``GET
/metrics`` on the admin listener (:mod:`oauthproxy.admin.metrics`) renders them.
"""
