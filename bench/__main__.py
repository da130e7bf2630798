"""`make bench`: kit issuing speed and memory on the Tarn data.

    python -m bench [--single N] [--skip-batch] [--campaign-rounds N] [--only-campaign]

Single kits: median and p95 of one whole kit (render, store, record) issued in-process.
Campaign: `flask kits issue --cdg 81` timed as a whole (every Tarn commune and EPCI) with one, then
two real Celery worker processes on Redis and PostgreSQL (bench/campaign.py).
Returns: verifying and storing one signed return; countersigning one piece.
Archive: objects archived per second to moto's S3 server; the CDG listing over 10 000 records.
Agents: 1 000 agents imported by the real request (CSV) on PostgreSQL, ≤ 5 s
(`--agents-import-only` runs just that; bench/agents_import.py).
Confirmations: 10 000 agents' e-mails queued by one request (≤ 10 s), then sent by two real
worker processes to a loopback SMTP server (bench/confirmations.py; `--only-confirmations`).
Targets (2-core machine): median ≤ 0.3 s per kit; the campaign in ≤ 60 s with two processes and
a speed-up ≥ 1.7 from one to two; ≤ 150 ms median for a return and for a countersignature.
Certificate: a membership certificate downloaded by its agent, ≤ 50 ms median once warm
(bench/certificate.py).
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import tempfile
import time

TARGET_MEDIAN_S = 0.3
TARGET_RETURN_S = 0.150


def _mb(kb: int) -> float:
    return kb / 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--single", type=int, default=30, help="kits issued one by one")
    parser.add_argument("--skip-batch", action="store_true")
    parser.add_argument(
        "--campaign-rounds",
        type=lambda value: max(1, int(value)),
        default=5,
        help="rounds of the campaign (1, then 2 processes), at least one",
    )
    parser.add_argument("--only-campaign", action="store_true", help="only the campaign benchmark")
    parser.add_argument("--returns", type=int, default=20, help="rounds of return benchmarks")
    parser.add_argument("--archive", type=int, default=100, help="objects archived to moto")
    # issue 11 (hB): importing 1 000 agents, the real request on PostgreSQL
    parser.add_argument("--agents-import-only", action="store_true")
    parser.add_argument("--skip-agents-import", action="store_true")
    parser.add_argument(
        "--certificate", type=int, default=50, help="membership certificates downloaded"
    )
    # -- hG: confirmations for 10 000 agents (bench/confirmations.py) --
    parser.add_argument("--confirmations", type=int, default=10_000, help="agents (0: skip)")
    parser.add_argument(
        "--only-confirmations", action="store_true", help="only the confirmations benchmark"
    )
    # -- end hG --
    args = parser.parse_args()
    if args.agents_import_only:
        return 0 if bench_agents_import_cli() else 1
    if args.only_confirmations:
        return 0 if bench_confirmations_cli(args.confirmations) else 1
    if args.only_campaign:
        return 0 if bench_campaign_cli(args.campaign_rounds) else 1

    from service import create_app
    from service.backends import document_store, settings
    from service.demo.load import load_demo
    from service.extensions import db
    from service.kits.domain import issue_kit
    from service.kits.render import render_kit
    from service.reference.models import Employer

    with tempfile.TemporaryDirectory(prefix="psc-bench-") as tmp:
        app = create_app({"INSTANCE_PATH": tmp, "DATABASE_URL": f"sqlite:///{tmp}/bench.sqlite3"})
        with app.app_context():
            from flask_migrate import upgrade

            upgrade()
            load_demo(everything=True)
            store = document_store()
            common = {
                "store": store,
                "actor": "bench",
                "code_days": settings().access_code_days,
                "portal_url": "http://127.0.0.1:8000/portail",
            }
            employers = list(db.session.scalars(db.select(Employer).order_by(Employer.id)))
            issue_kit(employers[0], **common)  # warm-up: templates, fonts
            db.session.commit()

            timings, render_timings, pages = [], [], 0
            for employer in employers[1 : 1 + args.single]:
                start = time.perf_counter()
                issued = issue_kit(employer, **common)
                db.session.commit()
                timings.append(time.perf_counter() - start)
                pages += sum(d.pages for d in issued.kit.documents)
            from service.kits.domain import kit_input

            for employer in employers[1 : 1 + min(args.single, 10)]:
                data = kit_input(
                    employer,
                    reference="PSC-81-2025-999999",
                    access_code="K7QHMX3P9TZB4RW2",
                    issued_on=time_today(),
                    code_days=120,
                    portal_url="http://x/portail",
                )
                start = time.perf_counter()
                render_kit(data)
                render_timings.append(time.perf_counter() - start)
            median = statistics.median(timings)
            p95 = sorted(timings)[max(0, int(len(timings) * 0.95) - 1)]
            print(f"kits issued one by one: {len(timings)}")
            print(
                f"  per kit: median {median * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms "
                f"(target median ≤ {TARGET_MEDIAN_S * 1000:.0f} ms) "
                f"{'OK' if median <= TARGET_MEDIAN_S else 'OVER TARGET'}"
            )
            rendering = statistics.median(render_timings)
            print(
                f"  rendering alone: median {rendering * 1000:.0f} ms "
                f"({rendering / 6 * 1000:.0f} ms per document)"
            )
            print(
                f"  pages per second (one core): {pages / sum(timings):.1f} "
                f"({pages / len(timings):.1f} pages per kit)"
            )
            from service.kits.render import template_set

            stats = template_set("default").layout_stats
            print(
                f"  kits laid out once per convention and shape: {stats['made']} layout(s) "
                f"made, reused by {stats['reused']} kits"
            )

            batch_ok = True
            returns_ok = bench_returns(employers[0], store, rounds=args.returns)
            archive_ok = bench_archive(app, employers[0], store, objects=args.archive)
            from bench.certificate import bench_certificate

            certificate_ok = bench_certificate(app, employers[0], rounds=args.certificate)
            own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
            print(
                f"peak memory: main process {_mb(own):.0f} MiB, "
                f"largest worker {_mb(children):.0f} MiB"
            )
            stored = sum(1 for _ in store.list("kits/"))
            print(f"objects stored: {stored}")
    if not args.skip_batch:
        batch_ok = bench_campaign_cli(args.campaign_rounds)
    agents_ok = args.skip_agents_import or bench_agents_import_cli()
    confirmations_ok = not args.confirmations or bench_confirmations_cli(args.confirmations)
    ok = (
        median <= TARGET_MEDIAN_S
        and batch_ok
        and returns_ok
        and archive_ok
        and agents_ok
        and certificate_ok
        and confirmations_ok
    )
    return 0 if ok else 1


def bench_agents_import_cli() -> bool:
    """Issue 11 (hB): 1 000 agents imported through the real request, ≤ 5 s (PostgreSQL from
    BENCH_DATABASE_URL or a throwaway cluster, Redis from BENCH_REDIS_URL)."""
    from bench.agents_import import bench_agents_import

    return bench_agents_import(rows=1000)


def bench_confirmations_cli(count: int) -> bool:
    """hG: the confirmations benchmark on PostgreSQL (BENCH_DATABASE_URL or a throwaway
    cluster) and Redis (BENCH_REDIS_URL)."""
    import os

    from bench.confirmations import bench_confirmations
    from tests.pg import ThrowawayCluster

    base = os.environ.get("BENCH_DATABASE_URL")
    cluster = None
    if not base:
        cluster = ThrowawayCluster()
        base = cluster.start()
    try:
        return bench_confirmations(
            base_url=base,
            redis_url=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/15"),
            count=count,
        )
    finally:
        if cluster is not None:
            cluster.stop()


def bench_campaign_cli(rounds: int) -> bool:
    """The Tarn campaign through the CLI with 1 then 2 real worker processes, `rounds` times
    (PostgreSQL from BENCH_DATABASE_URL or a throwaway cluster, Redis from BENCH_REDIS_URL)."""
    import os

    from bench.campaign import bench_campaigns
    from tests.pg import ThrowawayCluster

    base = os.environ.get("BENCH_DATABASE_URL")
    cluster = None
    if not base:
        cluster = ThrowawayCluster()
        base = cluster.start()
    try:
        return bench_campaigns(
            base_url=base,
            redis_url=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/15"),
            rounds=rounds,
        )
    finally:
        if cluster is not None:
            cluster.stop()


def bench_archive(app, employer, store, *, objects: int) -> bool:  # type: ignore[no-untyped-def]
    """Objects archived per second to moto's S3 server; the CDG listing over 10 000 records."""
    import os

    import boto3
    from moto.server import ThreadedMotoServer

    from service.accounts.auth import create_user
    from service.archive.domain import ArchivePolicy, _put_verified, retain_until
    from service.archive.models import ArchiveRecord
    from service.extensions import db
    from service.kits.domain import current_kit
    from storage.s3 import S3Store

    for key, value in {
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": "eu-west-3",
    }.items():
        os.environ.setdefault(key, value)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        boto3.client("s3", endpoint_url=endpoint, region_name="eu-west-3").create_bucket(
            Bucket="bench-archive",
            ObjectLockEnabledForBucket=True,
            CreateBucketConfiguration={"LocationConstraint": "eu-west-3"},
        )
        archive = S3Store("bench-archive", "cdg", endpoint_url=endpoint)
        kit = current_kit(employer)
        data = store.get(kit.documents[0].pdf_key)
        until = retain_until(kit.convention.ends_on, 10)
        start = time.perf_counter()
        for n in range(objects):
            _put_verified(
                archive,
                f"81/bench/{n:06d}.pdf",
                data,
                metadata={"n": str(n)},
                until=until,
                policy=ArchivePolicy(),
                content_type="application/pdf",
            )
        elapsed = time.perf_counter() - start
        print(
            f"archive: {objects / elapsed:.1f} objects/s to moto's S3 server "
            f"({len(data) // 1024} KiB each, put with checksum + read-back verification)"
        )
    finally:
        server.stop()

    total = 10_000
    db.session.bulk_insert_mappings(
        ArchiveRecord,
        [
            {
                "kit_id": kit.id,
                "cdg_code": "81",
                "siret": employer.siret,
                "kit_reference": f"PSC-81-2025-{n:06d}",
                "kind": "special-conditions",
                "key": f"81/listing/{n:06d}.pdf",
                "sha256": "0" * 64,
                "size": 80000,
                "signers": [],
                "retain_until": until.replace(tzinfo=None),
            }
            for n in range(total)
        ],
    )
    _, token = create_user(email="bench-cdg@cdg81.fr", role="cdg", cdg_code="81")
    db.session.commit()
    client = app.test_client()
    headers = {"Authorization": f"Bearer {token}"}
    times, after, pages = [], None, 0
    while True:
        url = "/api/v1/archive?cdg=81&limit=100" + (f"&after={after}" if after else "")
        start = time.perf_counter()
        page = client.get(url, headers=headers).json
        times.append(time.perf_counter() - start)
        pages += 1
        after = page["next"]
        if after is None:
            break
    listing = statistics.median(times)
    print(
        f"         CDG listing over {total} records: {pages} pages of 100, median "
        f"{listing * 1000:.1f} ms, p95 {sorted(times)[int(len(times) * 0.95) - 1] * 1000:.1f} ms "
        f"(target ≤ 200 ms) {'OK' if listing <= 0.2 else 'OVER'}"
    )
    return listing <= 0.2


def bench_returns(employer, store, *, rounds: int) -> bool:  # type: ignore[no-untyped-def]
    """Verify-and-store one signed return, and countersign one piece: medians."""
    from service.accounts.auth import Principal
    from service.backends import signing_key
    from service.extensions import db
    from service.kits.domain import current_kit
    from service.returns.domain import ReturnContext, receive_return
    from signing.countersign import countersign
    from signing.verify import TrustSettings
    from tests.pki import build_pki, sign_pdf

    pki = build_pki()
    kit = current_kit(employer)
    doc = next(d for d in kit.documents if d.kind == "special-conditions")
    issued = store.get(doc.pdf_key)
    signed = sign_pdf(issued, pki.untrusted)  # untrusted: every round goes to review
    ctx = ReturnContext(store=store, trust=TrustSettings(), max_bytes=20 * 1024 * 1024)
    who = Principal(role="employer", siret=employer.siret)
    verify_times = []
    for _ in range(rounds):
        start = time.perf_counter()
        receive_return(
            db.session.merge(kit),
            "special-conditions",
            signed,
            principal=who,
            address="127.0.0.1",
            ctx=ctx,
        )
        verify_times.append(time.perf_counter() - start)
    key = signing_key()
    sign_times = []
    for _ in range(rounds):
        start = time.perf_counter()
        countersign(signed, key, signer_label="Allianz Vie")
        sign_times.append(time.perf_counter() - start)
    v, c = statistics.median(verify_times), statistics.median(sign_times)
    print(
        f"returns: verify and store one return: median {v * 1000:.0f} ms, "
        f"p95 {sorted(verify_times)[int(rounds * 0.95) - 1] * 1000:.0f} ms "
        f"(target ≤ {TARGET_RETURN_S * 1000:.0f} ms) {'OK' if v <= TARGET_RETURN_S else 'OVER'}"
    )
    print(
        f"         countersign one piece: median {c * 1000:.0f} ms "
        f"(target ≤ {TARGET_RETURN_S * 1000:.0f} ms) {'OK' if c <= TARGET_RETURN_S else 'OVER'}"
    )
    return v <= TARGET_RETURN_S and c <= TARGET_RETURN_S


def time_today():  # type: ignore[no-untyped-def]
    from service.timeutil import utcnow

    return utcnow().date()


if __name__ == "__main__":
    sys.exit(main())
