"""The Celery app bound to the Flask app (the Flask documentation's pattern): every task runs in an
app context; Redis is the broker when REDIS_URL is set, else an embedded folder broker that needs
no server (one machine: `make run`)."""

from __future__ import annotations

import logging
import os
import socket
from datetime import timedelta
from typing import Any

from celery import Celery, Task, bootsteps
from celery import current_app as current_celery
from celery.schedules import crontab
from celery.signals import worker_process_init
from flask import Flask
from sqlalchemy import delete

from service.config import Settings
from service.engine.models import WorkerHeartbeat
from service.extensions import db
from service.timeutil import utcnow

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 10.0
#: a worker not seen for this long is not answering
HEARTBEAT_STALE = timedelta(seconds=3 * HEARTBEAT_SECONDS)


def broker_settings(settings: Settings) -> dict[str, Any]:
    if settings.redis_url:
        return {
            "broker_url": settings.redis_url,
            # an unacknowledged message (its worker killed) comes back after this; the
            # outbox's sweep sends it sooner (TASK_STALE_SECONDS)
            "broker_transport_options": {"visibility_timeout": 3600},
        }
    folder = settings.instance_path / "broker"
    for sub in ("queue", "processed"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    return {
        "broker_url": "filesystem://",
        "broker_transport_options": {
            "data_folder_in": str(folder / "queue"),
            "data_folder_out": str(folder / "queue"),
            "processed_folder": str(folder / "processed"),
            "store_processed": False,
        },
        # the folder broker has no broadcast: no remote control, no mingle or gossip
        "worker_enable_remote_control": False,
    }


def beat_schedule(settings: Settings) -> dict[str, Any]:
    return {
        "sweep-jobs": {"task": "psc.engine.sweep", "schedule": 60.0},
        "remind-employers": {
            "task": "psc.kits.remind_all",
            # REMIND_SCHEDULE_SECONDS: an interval instead of the daily run (tests, demos)
            "schedule": settings.remind_schedule_seconds or crontab(hour=8, minute=0),
            "kwargs": {"after_days": settings.remind_after_days},
        },
        "archive-fixity": {
            "task": "psc.archive.fixity",
            "schedule": crontab(hour=3, minute=30),
            "kwargs": {"sample": settings.fixity_sample},
        },
        "sweep-uploads": {"task": "psc.returns.sweep_uploads", "schedule": 3600.0},
    }


def init_celery(app: Flask, settings: Settings) -> Celery:
    class FlaskTask(Task):
        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            with app.app_context():
                try:
                    return self.run(*args, **kwargs)
                finally:
                    db.session.remove()

    celery = Celery(app.import_name, task_cls=FlaskTask)
    celery.conf.update(
        broker_settings(settings),
        task_default_queue=settings.task_queue,
        task_ignore_result=True,
        result_backend=None,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=2,
        task_publish_retry_policy={"max_retries": 1, "interval_start": 0.2},
        timezone=settings.timezone,
        beat_schedule=beat_schedule(settings),
        beat_schedule_filename=str(settings.instance_path / "celerybeat-schedule"),
    )
    celery.steps["worker"].add(Heartbeat)
    celery.flask_app = app  # type: ignore[attr-defined]
    celery.set_default()
    app.extensions["celery"] = celery
    return celery


class Heartbeat(bootsteps.StartStopStep):
    """Each worker writes its row every HEARTBEAT_SECONDS: the CLI and the queue page know
    whether a worker answers, whatever the broker."""

    requires = ("celery.worker.components:Timer",)

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        super().__init__(worker, **kwargs)
        self.tref: Any = None
        self.hostname = f"{worker.hostname or socket.gethostname()}:{os.getpid()}"
        self.concurrency = int(worker.concurrency or 1)
        self.flask_app: Flask = worker.app.flask_app

    def start(self, worker: Any) -> None:
        self.beat()
        self.tref = worker.timer.call_repeatedly(HEARTBEAT_SECONDS, self.beat)

    def stop(self, worker: Any) -> None:
        if self.tref is not None:
            self.tref.cancel()
        with self.flask_app.app_context():
            try:
                db.session.execute(
                    delete(WorkerHeartbeat).where(WorkerHeartbeat.hostname == self.hostname)
                )
                db.session.commit()
            except Exception:
                log.warning("could not remove the heartbeat of %s", self.hostname)
            finally:
                db.session.remove()

    def beat(self) -> None:
        with self.flask_app.app_context():
            try:
                row = db.session.get(WorkerHeartbeat, self.hostname)
                if row is None:
                    row = WorkerHeartbeat(
                        hostname=self.hostname,
                        pid=os.getpid(),
                        concurrency=self.concurrency,
                        started_at=utcnow(),
                    )
                    db.session.add(row)
                row.seen_at = utcnow()
                db.session.commit()
            except Exception:  # the database is down: the worker goes on, unseen
                log.warning("heartbeat of %s not written", self.hostname, exc_info=True)
                db.session.rollback()
            finally:
                db.session.remove()


@worker_process_init.connect
def _fresh_connections(**_: Any) -> None:
    """A forked pool process must not share its parent's database connections."""
    flask_app = getattr(current_celery, "flask_app", None)
    if flask_app is not None:
        with flask_app.app_context():
            db.engine.dispose(close=False)


def live_workers() -> list[WorkerHeartbeat]:
    """Workers seen within HEARTBEAT_STALE."""
    return list(
        db.session.scalars(
            db.select(WorkerHeartbeat).where(WorkerHeartbeat.seen_at >= utcnow() - HEARTBEAT_STALE)
        )
    )
