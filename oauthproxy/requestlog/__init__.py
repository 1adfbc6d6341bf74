"""The request log: records built per request, written to Redis in batches."""
