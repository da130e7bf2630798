"""The background engine: the outbox of jobs, the Celery app, workers\x27 heartbeats."""
