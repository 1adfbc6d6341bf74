"""Tests of the request log: records, writer, queries and both stores."""
