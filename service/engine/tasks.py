"""The engine's own periodic task: send again what was left behind."""

from __future__ import annotations

from datetime import timedelta

from celery import shared_task

from service.backends import settings
from service.engine import outbox


@shared_task(name="psc.engine.sweep", ignore_result=True)
def sweep_jobs() -> int:
    """Pending jobs whose message was lost (a worker killed, a broker restarted) are sent again."""
    return outbox.sweep(stale_after=timedelta(seconds=settings().task_stale_seconds))
