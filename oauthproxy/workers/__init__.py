"""Worker processes: ``--workers N`` runs N daemons on one set of sockets, supervised."""
