"""ACME certificates: pure certificate math, the HTTP-01 responder and the clocked issuing service.

The blocking ``acme`` library runs only in a dedicated thread pool, in ``_thd_*`` functions.
"""
