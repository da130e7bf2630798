"""The campaign of every Tarn employer through the CLI, timed as a whole, with real Celery worker
processes on Redis and PostgreSQL (the production shape): one worker process, then two.

Each run starts from a fresh database (demo data loaded, no kit) and a fresh instance folder (no
kit shape made yet), starts `celery --app service.worker worker --concurrency N`, waits until it
answers and its processes are warmed up (their CPU still), then times `flask kits issue --cdg 81`
(which enqueues the campaign and waits for it with its progress bar). A round is one run with one
process then one with two, minutes apart; the speed-up judged is the median of the rounds' (the
machine is a shared virtual one: its speed drifts by a quarter from one minute to the next).

Where the time goes is printed under each run: the command's start until the campaign's row
(CLI start-up), until the first kit is claimed, the last kit's commit until the command ends, a
kit job's median (claim to commit) early and late, the e-mails the same workers sent meanwhile;
the CPU seconds of the command and of the worker (start included); the CPU used during the command
by the worker's main and pool processes (user and system apart), PostgreSQL, Redis and the rest
of the machine (the kernel's writeback among them): with two processes on two cores, all of it
competes with the pool; the kit shapes made; the load average.
BENCH_WORKER_LOG=folder keeps each run's worker log there (BENCH_WORKER_LOGLEVEL=INFO: each task).
"""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.exc import SQLAlchemyError

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
    #: CPU seconds used during the command, by process (see _cpu_by_process; the command apart)
    during: dict[str, float] = field(default_factory=dict)
    #: load average (1 min) before and after the command
    load: tuple[float, float] = (0.0, 0.0)


def _cpu_of_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _cpu_by_process(worker: int) -> dict[tuple[int, str], float]:
    """CPU seconds (user + system) so far of each running process that shares the machine with
    the worker's pool, by (pid, group): the worker's main process (it receives and acknowledges
    the tasks), its pool processes (user and system apart: the system's part is mostly the
    writes), PostgreSQL's and Redis's processes, everything else by name."""
    tick = os.sysconf("SC_CLK_TCK")
    seconds: dict[tuple[int, str], float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        head, _, rest = stat.rpartition(")")
        fields = rest.split()
        pid, comm, ppid = int(entry.name), head.partition("(")[2], int(fields[1])
        user, system = int(fields[11]) / tick, int(fields[12]) / tick
        if pid == worker:
            seconds[pid, "worker (main)"] = user + system
        elif ppid == worker:
            seconds[pid, "worker (pool, user)"] = user
            seconds[pid, "worker (pool, system)"] = system
        elif comm.startswith("postgres"):
            seconds[pid, "postgres"] = user + system
        elif comm.startswith("redis"):
            seconds[pid, "redis"] = user + system
        else:
            seconds[pid, f"other ({comm})"] = user + system
    return seconds


def _used_between(
    before: dict[tuple[int, str], float], after: dict[tuple[int, str], float]
) -> dict[str, float]:
    """CPU seconds used between two readings, by group, small other processes together (a
    process that ended in between is not counted: the command's own connection, mostly)."""
    used: dict[str, float] = {}
    for (pid, group), seconds in after.items():
        used[group] = used.get(group, 0.0) + seconds - before.get((pid, group), 0.0)
    grouped: dict[str, float] = {}
    for group, seconds in used.items():
        key = "other" if group.startswith("other") and seconds < 0.3 else group
        grouped[key] = grouped.get(key, 0.0) + seconds
    return grouped


def _written(url: str) -> dict[str, float]:
    """MB written so far: to the disks (the kernel's counters: files, PostgreSQL's WAL and
    tables, the journal), and to PostgreSQL's WAL (the whole server's)."""
    sectors = 0
    for line in Path("/proc/diskstats").read_text().splitlines():
        fields = line.split()
        # whole disks only (a partition's or a mapped device's sectors are its disk's too)
        if len(fields) > 9 and (Path("/sys/block") / fields[2] / "device").exists():
            sectors += int(fields[9])
    engine = create_engine(url)
    with engine.connect() as conn:
        try:  # PostgreSQL 14 on
            wal = conn.execute(text("SELECT wal_bytes FROM pg_stat_wal")).scalar() or 0
        except SQLAlchemyError:
            wal = 0
    engine.dispose()
    return {"disk": sectors * 512 / 1e6, "wal": float(wal) / 1e6}


def _wait_until_idle(worker: int, *, timeout: float = 120.0) -> None:
    """Until the worker's processes have started and warmed up (each pool process renders a kit
    of each convention first): their CPU time still for a second."""
    deadline = time.monotonic() + timeout

    def used() -> float:
        seconds = _cpu_by_process(worker)
        return sum(value for (_, group), value in seconds.items() if group.startswith("worker"))

    before = used()
    while time.monotonic() < deadline:
        time.sleep(1.0)
        now = used()
        if now - before < 0.05:
            return
        before = now
    raise RuntimeError("the bench's worker did not settle")


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
        mails = conn.execute(
            text(
                "SELECT count(*) FROM job WHERE task = 'psc.mail.send' "
                "AND done_at IS NOT NULL AND done_at <= :ended"
            ),
            {"ended": ended.replace(tzinfo=None)},
        ).scalar()
        durations = (
            conn.execute(
                text(
                    "SELECT extract(epoch FROM done_at - started_at) FROM job "
                    "WHERE campaign_id IS NOT NULL AND done_at IS NOT NULL ORDER BY started_at"
                )
            )
            .scalars()
            .all()
        )
    engine.dispose()
    if None in tuple(row):
        return {}
    campaign, first, last = (t.replace(tzinfo=UTC) for t in row)
    tenth = max(1, len(durations) // 10)
    return {
        "mails": float(mails or 0),
        "first_kits": statistics.median(float(d) for d in durations[:tenth]),
        "last_kits": statistics.median(float(d) for d in durations[-tenth:]),
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
        with tempfile.TemporaryDirectory(
            prefix="psc-bench-campaign-", ignore_cleanup_errors=True
        ) as tmp:
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
                    os.environ.get("BENCH_WORKER_LOGLEVEL", "WARNING"),
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
            _wait_until_idle(worker.pid)
            load_before = os.getloadavg()[0]
            processes_before = _cpu_by_process(worker.pid)
            written_before = _written(url)
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
            processes_after = _cpu_by_process(worker.pid)
            written_after = _written(url)
            during = _used_between(processes_before, processes_after) | {
                f"written ({kind})": written_after[kind] - written_before[kind]
                for kind in written_after
            }
            cpu_cli = _cpu_of_children()
            kits = _count(url, "SELECT count(DISTINCT employer_id) FROM kit")
            layouts = Path(tmp) / "kit-layouts"
            layouts.mkdir(exist_ok=True)
            shapes = [p for p in layouts.iterdir() if not p.name.startswith(".")]
            during["shapes"] = len(shapes)
            phases = _phases(url, started, ended)
            os.killpg(worker.pid, signal.SIGTERM)
            worker.wait(timeout=60)
            with contextlib.suppress(ProcessLookupError):  # a pool process left behind
                os.killpg(worker.pid, signal.SIGKILL)
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
                during,
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
            f"kits {p['kits']:.1f} s, last commit to the command's end {p['tail']:.1f} s; "
            f"a kit's job (median) {1000 * p['first_kits']:.0f} ms in the first tenth, "
            f"{1000 * p['last_kits']:.0f} ms in the last; "
            f"{p['mails']:.0f} « kit émis » e-mails sent meanwhile by the same workers"
        )
    if run.cpu:
        parts.append(
            f"CPU: command {run.cpu['cli']:.1f} s, worker {run.cpu['worker']:.1f} s "
            f"({1000 * run.cpu['worker'] / max(run.kits, 1):.0f} ms a kit, start included)"
        )
    if run.during:
        during = dict(run.during)
        shapes = int(during.pop("shapes", 0))
        disk, wal = during.pop("written (disk)", 0.0), during.pop("written (wal)", 0.0)
        parts.append(
            "CPU during the command: "
            + ", ".join(f"{group} {used:.1f} s" for group, used in sorted(during.items()))
        )
        parts.append(f"{shapes} kit shapes made on the machine (worker start included)")
        parts.append(
            f"{disk:.0f} MB written to the disk during the command, PostgreSQL's WAL {wal:.0f} MB"
        )
    parts.append(f"load {run.load[0]:.1f} → {run.load[1]:.1f} on {os.cpu_count()} cores")
    return "; ".join(parts)


def bench_campaigns(*, base_url: str, redis_url: str, rounds: int = 5) -> bool:
    """`rounds` pairs of runs (one process, then two), each on a fresh database; the speed-up of
    each pair (its runs are minutes apart: the machine's drift cancels out), the median judged."""
    pairs: list[tuple[CampaignRun, CampaignRun]] = []
    for number in range(1, rounds + 1):
        runs = []
        for processes in (1, 2):
            run = run_campaign(processes, base_url=base_url, redis_url=redis_url)
            runs.append(run)
            print(
                f"campaign `flask kits issue --cdg 81`, round {number}/{rounds}, "
                f"{run.processes} worker process{'es' if run.processes > 1 else ''} "
                f"(whole command, measured): {run.kits}/{run.employers} employers in "
                f"{run.seconds:.1f} s ({run.kits / run.seconds:.2f} kits/s)"
            )
            print("  " + describe(run))
            if run.returncode != 0 or run.kits != run.employers:
                print(run.output[-3000:])
        pairs.append((runs[0], runs[1]))
        ratio = runs[0].seconds / runs[1].seconds
        print(f"  round {number}: speed-up 1 → 2 processes ×{ratio:.2f}")
    two = statistics.median(pair[1].seconds for pair in pairs)
    one = statistics.median(pair[0].seconds for pair in pairs)
    speedups = sorted(first.seconds / second.seconds for first, second in pairs)
    speedup = statistics.median(speedups)
    ok_time = two <= TARGET_CAMPAIGN_S and all(pair[1].returncode == 0 for pair in pairs)
    ok_speedup = speedup >= TARGET_SPEEDUP
    print(
        f"campaign, median of {rounds} rounds: one process {one:.1f} s, two processes {two:.1f} s "
        f"(target ≤ {TARGET_CAMPAIGN_S:.0f} s) {'OK' if ok_time else 'OVER TARGET'}; speed-up "
        f"1 → 2 processes ×{speedup:.2f} (rounds: "
        + ", ".join(f"×{value:.2f}" for value in speedups)
        + f"; target ≥ ×{TARGET_SPEEDUP}) {'OK' if ok_speedup else 'UNDER TARGET'}"
    )
    rate = statistics.median(pair[1].kits / pair[1].seconds for pair in pairs)
    print(
        f"  projection (not a measurement): a national campaign of {NATIONAL} employers "
        f"takes {NATIONAL / rate / 3600:.1f} h on one 2-core worker machine at the measured "
        f"{rate:.2f} kits/s, {NATIONAL / rate / 3600 / 10:.1f} h on ten"
    )
    return (
        ok_time and ok_speedup and all(run.kits == run.employers for pair in pairs for run in pair)
    )
