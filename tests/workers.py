"""Real Celery worker (and beat) processes for the tests, started as a user starts them:
`celery --app service.worker worker`, with the test app's configuration in the environment."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from flask import Flask

ROOT = Path(__file__).resolve().parent.parent
CELERY = str(Path(sys.executable).parent / "celery")
REDIS = "redis://127.0.0.1:6379"


def redis_db() -> int:
    """A Redis database per xdist worker (gw0 → 1, gw1 → 2…), so parallel tests never share
    queues."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    return 1 + int(worker.removeprefix("gw") or 0) % 14


def redis_config() -> dict[str, str]:
    """Configuration for an app whose jobs go through Redis, on a queue of its own."""
    return {
        "REDIS_URL": f"{REDIS}/{redis_db()}",
        "CELERY_QUEUE": f"psc-test-{uuid.uuid4().hex[:10]}",
        "RATELIMIT_PREFIX": f"psc-test-{uuid.uuid4().hex[:10]}",
    }


def worker_env(app: Flask, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env.update({k: str(v) for k, v in app.config["PSC_OVERRIDES"].items()})
    env.update(extra)
    env["PYTHONPATH"] = str(ROOT)
    return env


@contextmanager
def celery_process(
    app: Flask, *args: str, log: Path, **extra: str
) -> Iterator[subprocess.Popen[bytes]]:
    """`celery --app service.worker <args>` in its own process group; stopped (TERM, then KILL)
    on exit."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [CELERY, "--app", "service.worker", *args],
            cwd=ROOT,
            env=worker_env(app, **extra),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield proc
    finally:
        stop(proc)


def stop(proc: subprocess.Popen[bytes], *, hard: bool = False) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGKILL if hard else signal.SIGTERM)
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    except ProcessLookupError:
        pass


@contextmanager
def worker(
    app: Flask, log: Path, *, concurrency: int = 1, **extra: str
) -> Iterator[subprocess.Popen[bytes]]:
    queue = app.extensions["psc.settings"].task_queue
    with celery_process(
        app,
        "worker",
        "--loglevel",
        "INFO",
        "--concurrency",
        str(concurrency),
        "--queues",
        queue,
        "--hostname",
        f"test-{uuid.uuid4().hex[:8]}@%h",
        "--without-mingle",
        "--without-gossip",
        log=log,
        **extra,
    ) as proc:
        yield proc


def wait_for(
    condition: Callable[[], Any], *, timeout: float = 60.0, every: float = 0.2, what: str = ""
) -> Any:
    """Poll `condition` until it returns something true; fail after `timeout` seconds."""
    end = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"not within {timeout:.0f} s: {what or condition}")
        time.sleep(every)
