"""The admin API: one small Klein class per resource, declared schemas, one error mapping.

:class:`oauthproxy.admin.api.AdminAPI` is what the composition root builds;
:mod:`oauthproxy.admin.endpoint` is how a resource declares its operations.
Nothing is imported here, so that the CLI can use :mod:`oauthproxy.admin.credentials`
without loading Klein.
"""
