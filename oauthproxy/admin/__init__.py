"""The admin API: one small Klein class per resource, declared schemas, one error mapping."""
