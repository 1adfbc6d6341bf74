"""Redis storage: the only package that imports txredisapi.

``keys`` names every Redis key, ``codec`` turns records into JSON, ``redis``
implements the store interfaces of :mod:`oauthproxy.interfaces` (each write and
its event in one MULTI/EXEC), ``mirror`` keeps the in-memory snapshot the data
plane reads, tailing the ``events`` stream.
"""
