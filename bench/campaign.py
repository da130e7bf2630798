"""The campaign of every Tarn employer through the CLI, timed as a whole, with real Celery worker
processes on Redis and PostgreSQL (the production shape): one worker process, then two.

Each run starts from a fresh database (demo data loaded, no kit), starts
`celery --app service.worker worker --concurrency N`, waits until it answers, then times
`flask kits issue --cdg 81` (which enqueues the campaign and waits for it with its progress bar).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
TARGET_CAMPAIGN_S = 60.0
TARGET_SPEEDUP = 1.7
NATIONAL = 35_000


@dataclass(frozen=True)
class CampaignRun:
    processes: int
    employers: int
    kits: int
    seconds: float
    returncode: int
    output: str


def _database(base: str) -> tuple[str, str]:
    name = f"psc_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return base.rsplit("/", 1)[0] + "/" + name, name


def _drop(base: str, name: str) -> None:
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _count(url: str, sql: str) -> int:
    engine = create_engine(url)
    with engine.connect() as conn:
        value = int(conn.execute(text(sql)).scalar() or 0)
    engine.dispose()
    return value


def run_campaign(processes: int, *, base_url: str, redis_url: str) -> CampaignRun:
    url, name = _database(base_url)
    worker = None
    try:
        with tempfile.TemporaryDirectory(prefix="psc-bench-campaign-") as tmp:
            env = {
                **os.environ,
                "INSTANCE_PATH": tmp,
                "DATABASE_URL": url,
                "REDIS_URL": redis_url,
                "CELERY_QUEUE": f"psc-bench-{uuid.uuid4().hex[:8]}",
                "FLASK_APP": "service",
                "PYTHONPATH": str(ROOT),
            }
            flask = str(BIN / "flask")
            for step in (["db", "upgrade"], ["demo", "load", "--all", "--quiet"]):
                subprocess.run([flask, *step], env=env, check=True, capture_output=True, cwd=ROOT)
            employers = _count(url, "SELECT count(*) FROM employer")
            log = open(Path(tmp) / "worker.log", "wb")  # noqa: SIM115 - closed with the worker
            worker = subprocess.Popen(
                [
                    str(BIN / "celery"),
                    "--app",
                    "service.worker",
                    "worker",
                    "--concurrency",
                    str(processes),
                    "--queues",
                    env["CELERY_QUEUE"],
                    "--without-mingle",
                    "--without-gossip",
                    "--loglevel",
                    "WARNING",
                ],
                env=env,
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            deadline = time.monotonic() + 60
            while _count(url, "SELECT count(*) FROM worker_heartbeat") == 0:
                if time.monotonic() > deadline or worker.poll() is not None:
                    raise RuntimeError("the bench's worker did not start")
                time.sleep(0.3)
            time.sleep(2)  # the pool's processes are up once the heartbeat is written
            start = time.perf_counter()
            run = subprocess.run(
                [flask, "kits", "issue", "--cdg", "81"],
                env=env,
                cwd=ROOT,
                capture_output=True,
                text=True,
            )
            seconds = time.perf_counter() - start
            kits = _count(url, "SELECT count(DISTINCT employer_id) FROM kit")
            os.killpg(worker.pid, signal.SIGTERM)
            worker.wait(timeout=60)
            log.close()
            return CampaignRun(
                processes, employers, kits, seconds, run.returncode, run.stdout + run.stderr
            )
    finally:
        if worker is not None and worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
        _drop(base_url, name)


def bench_campaigns(*, base_url: str, redis_url: str) -> bool:
    runs = [run_campaign(n, base_url=base_url, redis_url=redis_url) for n in (1, 2)]
    for run in runs:
        print(
            f"campaign `flask kits issue --cdg 81` with {run.processes} worker "
            f"process{'es' if run.processes > 1 else ''} (whole command, measured): "
            f"{run.kits}/{run.employers} employers in {run.seconds:.1f} s "
            f"({run.kits / run.seconds:.2f} kits/s)"
        )
        if run.returncode != 0 or run.kits != run.employers:
            print(run.output[-3000:])
    one, two = runs
    speedup = one.seconds / two.seconds
    ok_time = two.seconds <= TARGET_CAMPAIGN_S and two.returncode == 0
    ok_speedup = speedup >= TARGET_SPEEDUP
    print(
        f"  two processes: {two.seconds:.1f} s (target ≤ {TARGET_CAMPAIGN_S:.0f} s) "
        f"{'OK' if ok_time else 'OVER TARGET'}; speed-up 1 → 2 processes ×{speedup:.2f} "
        f"(target ≥ ×{TARGET_SPEEDUP}) {'OK' if ok_speedup else 'UNDER TARGET'}"
    )
    rate = two.kits / two.seconds
    print(
        f"  projection (not a measurement): a national campaign of {NATIONAL} employers "
        f"takes {NATIONAL / rate / 3600:.1f} h on one 2-core worker machine at the measured "
        f"{rate:.2f} kits/s, {NATIONAL / rate / 3600 / 10:.1f} h on ten"
    )
    return ok_time and ok_speedup and all(r.kits == r.employers for r in runs)
