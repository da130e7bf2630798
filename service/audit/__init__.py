"""The audit trail: append-only events chained by hash."""
