"""The campaign of every Tarn employer through the CLI, timed as a whole, with real Celery worker
processes on Redis and PostgreSQL (the production shape): one worker process, then two.

Each run starts from a fresh database (demo data loaded, no kit), starts
`celery --app service.worker worker --concurrency N`, waits until it answers, then times
`flask kits issue --cdg 81` (which enqueues the campaign and waits for it with its progress bar).

Where the time goes is printed under each run: the command's start until the campaign's row
(CLI start-up), until the first kit is claimed, the last kit's commit until the command ends, the
CPU seconds of the command and of the worker's processes (start included), and the load average
(the machine is shared: a load above the core count means the run waited for the CPU).
BENCH_WORKER_LOG=folder keeps each run's worker log there.
"""

from __future__ import annotations

import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
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
    #: seconds: the command's start until the campaign's row, until the first claim; the last
    #: kit's commit until the command's end
    phases: dict[str, float] = field(default_factory=dict)
    #: CPU seconds (user + system): the command, the worker's processes (start included)
    cpu: dict[str, float] = field(default_factory=dict)
    #: load average (1 min) before and after the command
    load: tuple[float, float] = (0.0, 0.0)


def _cpu_of_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _phases(url: str, started: datetime, ended: datetime) -> dict[str, float]:
    engine = create_engine(url)
    with engine.connect() as conn:
        row = conn.execute(
            text(
                "SELECT (SELECT min(started_at) FROM campaign), "
                "(SELECT min(started_at) FROM job WHERE campaign_id IS NOT NULL), "
                "(SELECT max(done_at) FROM job WHERE campaign_id IS NOT NULL)"
            )
        ).one()
    engine.dispose()
    if None in tuple(row):
        return {}
    campaign, first, last = (t.replace(tzinfo=UTC) for t in row)
    return {
        "cli_start": (campaign - started).total_seconds(),
        "first_claim": (first - started).total_seconds(),
        "kits": (last - first).total_seconds(),
        "tail": (ended - last).total_seconds(),
    }


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
            cpu_before = _cpu_of_children()
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
            load_before = os.getloadavg()[0]
            started = datetime.now(UTC)
            start = time.perf_counter()
            run = subprocess.run(
                [flask, "kits", "issue", "--cdg", "81"],
                env=env,
                cwd=ROOT,
                capture_output=True,
                text=True,
            )
            seconds = time.perf_counter() - start
            ended, load_after = datetime.now(UTC), os.getloadavg()[0]
            cpu_cli = _cpu_of_children()
            kits = _count(url, "SELECT count(DISTINCT employer_id) FROM kit")
            phases = _phases(url, started, ended)
            os.killpg(worker.pid, signal.SIGTERM)
            worker.wait(timeout=60)
            log.close()
            cpu = {"cli": cpu_cli - cpu_before, "worker": _cpu_of_children() - cpu_cli}
            keep = os.environ.get("BENCH_WORKER_LOG")
            if keep:
                Path(keep).mkdir(parents=True, exist_ok=True)
                shutil.copy(Path(tmp) / "worker.log", Path(keep) / f"worker-{processes}.log")
            return CampaignRun(
                processes,
                employers,
                kits,
                seconds,
                run.returncode,
                run.stdout + run.stderr,
                phases,
                cpu,
                (load_before, load_after),
            )
    finally:
        if worker is not None and worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
        _drop(base_url, name)


def describe(run: CampaignRun) -> str:
    """Where a run's time went, on one line."""
    p = run.phases
    parts = []
    if p:
        parts.append(
            f"CLI start-up {p['cli_start']:.1f} s, first kit claimed at {p['first_claim']:.1f} s, "
            f"kits {p['kits']:.1f} s, last commit to the command's end {p['tail']:.1f} s"
        )
    if run.cpu:
        parts.append(
            f"CPU: command {run.cpu['cli']:.1f} s, worker {run.cpu['worker']:.1f} s "
            f"({1000 * run.cpu['worker'] / max(run.kits, 1):.0f} ms a kit, start included)"
        )
    parts.append(f"load {run.load[0]:.1f} → {run.load[1]:.1f} on {os.cpu_count()} cores")
    return "; ".join(parts)


def bench_campaigns(*, base_url: str, redis_url: str) -> bool:
    runs = [run_campaign(n, base_url=base_url, redis_url=redis_url) for n in (1, 2)]
    for run in runs:
        print(
            f"campaign `flask kits issue --cdg 81` with {run.processes} worker "
            f"process{'es' if run.processes > 1 else ''} (whole command, measured): "
            f"{run.kits}/{run.employers} employers in {run.seconds:.1f} s "
            f"({run.kits / run.seconds:.2f} kits/s)"
        )
        print("  " + describe(run))
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
