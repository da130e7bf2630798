"""The returns' periodic task: upload copies left behind by a crash are deleted."""

from __future__ import annotations

import logging

from celery import shared_task

from service.returns.actions import sweep_leftover_uploads

log = logging.getLogger(__name__)


@shared_task(name="psc.returns.sweep_uploads", ignore_result=True)
def sweep_uploads() -> int:
    """Beat, hourly: upload copies no return refers to, older than QUARANTINE_MAX_AGE_MINUTES."""
    removed = sweep_leftover_uploads()
    if removed:
        log.info("%d leftover upload copies deleted", removed)
    return removed
