"""Fixtures: the app on a real SQLite file and a real PostgreSQL, real stores, real tokens.

Database tests run on SQLite, and on PostgreSQL as well when marked `postgres` (see
pytest_generate_tests). PostgreSQL comes from TEST_DATABASE_URL when set, otherwise from a
throwaway cluster started here.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import boto3
import pytest
from argon2 import PasswordHasher
from flask import Flask
from flask.testing import FlaskClient
from moto.server import ThreadedMotoServer
from sqlalchemy import create_engine, text

from service import create_app
from service.extensions import db

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT.parent / "shared" / "corpus"
ARTIFACTS = ROOT / "tests" / "artifacts"


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    base = os.environ.get("TEST_DATABASE_URL")
    cluster = None
    if not base:
        from tests.pg import ThrowawayCluster

        cluster = ThrowawayCluster()
        base = cluster.start()
    name = f"psc_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = base.rsplit("/", 1)[0] + "/" + name
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
        if cluster is not None:
            cluster.stop()


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'test.sqlite3'}"


_migrated: set[str] = set()


def _migrate(app: Flask) -> None:
    from flask_migrate import upgrade

    with app.app_context():
        upgrade()


def _reset(app: Flask) -> None:
    with app.app_context():
        db.session.remove()
        tables = [t.name for t in reversed(db.metadata.sorted_tables)]
        with db.engine.begin() as conn:
            if db.engine.dialect.name == "postgresql":
                conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
                conn.execute(text("ALTER TABLE audit_event ENABLE TRIGGER USER"))
            else:
                for table in tables:
                    conn.execute(text(f"DELETE FROM {table}"))
        db.engine.dispose()


def make_app(database_url: str, tmp_path: Path, **extra: str) -> Flask:
    config = {
        "DATABASE_URL": database_url,
        "INSTANCE_PATH": str(tmp_path / "instance"),
        "SECRET_KEY": "test-secret-key",
        "PUBLIC_URL": "http://portail.test.local",
        **extra,
    }
    app = create_app(config)
    app.config["TESTING"] = True
    if database_url not in _migrated:
        _migrate(app)
        _migrated.add(database_url)
    return app


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """`backend` is SQLite, and PostgreSQL as well for a test marked `postgres` (where the
    behaviour differs: locking, concurrency, migrations, SQL of one dialect); a test may also
    name its backends with `@pytest.mark.parametrize("backend", [...])`."""
    if "backend" not in metafunc.fixturenames:
        return
    for marker in metafunc.definition.iter_markers("parametrize"):
        names = marker.args[0]
        if "backend" in (names.replace(" ", "").split(",") if isinstance(names, str) else names):
            return
    both = metafunc.definition.get_closest_marker("postgres") is not None
    metafunc.parametrize("backend", ["sqlite", "postgres"] if both else ["sqlite"])


@pytest.fixture
def database_url(backend: str, request: pytest.FixtureRequest) -> str:
    return request.getfixturevalue(f"{backend}_url")


@pytest.fixture(scope="session")
def pki():  # type: ignore[no-untyped-def]
    from tests.pki import build_pki

    return build_pki()


@pytest.fixture(scope="session")
def trust_roots(pki, tmp_path_factory: pytest.TempPathFactory) -> Path:  # type: ignore[no-untyped-def]
    return pki.roots_pem(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def app_config() -> dict[str, str]:
    """Extra configuration for the `app` fixture (override in a test module)."""
    return {}


@pytest.fixture
def app(
    database_url: str, tmp_path: Path, trust_roots: Path, app_config: dict[str, str]
) -> Iterator[Flask]:
    application = make_app(
        database_url, tmp_path, SIGNING_TRUST_ROOTS=str(trust_roots), **app_config
    )
    try:
        yield application
    finally:
        _reset(application)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def create_token(app: Flask, role: str, email: str, cdg: str | None = None) -> str:
    from service.accounts.auth import create_user

    with app.app_context():
        _, token = create_user(email=email, role=role, cdg_code=cdg)
        db.session.commit()
    return token


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def staff(app: Flask) -> dict[str, str]:
    return auth(create_token(app, "staff", "production@assureur.fr"))


CDG81 = {"code": "81", "name": "Centre de gestion du Tarn", "email": "prevoyance@cdg81.fr"}
CONVENTION = {
    "cdg": "81",
    "reference": "CDG81-PREV-2025-2030",
    "insurer": "Allianz Vie",
    "manager": "Collecteam",
    "starts_on": "2025-01-01",
    "ends_on": "2030-12-31",
    "base_rate": "2.30",
    "cdg_fee_rate": "1.10",
    "options": [
        {"code": "deces", "label": "Décès", "rate": "0.30"},
        {"code": "perte_retraite", "label": "Perte de retraite", "rate": "0.45"},
    ],
}


@pytest.fixture
def convention(client: FlaskClient, staff: dict[str, str]) -> dict[str, Any]:
    assert client.post("/api/v1/cdgs", json=CDG81, headers=staff).status_code == 201
    r = client.post("/api/v1/conventions", json=CONVENTION, headers=staff)
    assert r.status_code == 201, r.json
    return r.json


def employer_payload(convention_id: int, /, **overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "siret": "21810004800014",
        "name": "Albi",
        "kind": "commune",
        "address": "16 rue de l'Hôtel de Ville, 81000 Albi",
        "email": "rh@mairie-albi.fr",
        "cdg": "81",
        "convention_id": convention_id,
        "headcount": 560,
        "cst_opinion_on": "2024-10-01",
        "deliberation_on": "2024-11-15",
        "contribution": {"mode": "flat", "amount": "15.00"},
    }
    data.update(overrides)
    return data


@pytest.fixture
def employer(
    client: FlaskClient, staff: dict[str, str], convention: dict[str, Any]
) -> dict[str, Any]:
    r = client.post("/api/v1/employers", json=employer_payload(convention["id"]), headers=staff)
    assert r.status_code == 201, r.json
    record_prerequisites(client.application, r.json["siret"])
    return r.json


def record_prerequisites(app: Flask, *sirets: str) -> None:
    """Record every prerequisite of these employers (placeholder PDFs, labelled as demo), as
    staff would for papers received by post: their kits may then be issued."""
    from service.backends import document_store
    from service.reference.domain import get_employer
    from service.subscriptions.domain import record_placeholders

    with app.app_context():
        for siret in sirets:
            record_placeholders(get_employer(siret), actor="staff:tests", store=document_store())
        db.session.commit()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


def today() -> date:
    return date.today()


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture(autouse=True, scope="session")
def _cheap_password_hashes() -> Iterator[None]:
    """Argon2id still hashes and verifies every password, at the smallest cost (1 MiB, one
    pass) instead of the library's 64 MiB and three passes, a third of a second per sign-in
    here: the cost is a deployment setting, which no test is about."""
    mp = pytest.MonkeyPatch()
    mp.setattr(
        "service.accounts.auth._hasher",
        PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1),
    )
    yield
    mp.undo()


@pytest.fixture(autouse=True, scope="session")
def _aws_credentials() -> Iterator[None]:
    mp = pytest.MonkeyPatch()
    for key, value in {
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "eu-west-3",
    }.items():
        mp.setenv(key, value)
    yield
    mp.undo()


def make_bucket(endpoint: str, name: str, *, lock: bool) -> None:
    client = boto3.client("s3", endpoint_url=endpoint, region_name="eu-west-3")
    client.create_bucket(
        Bucket=name,
        CreateBucketConfiguration={"LocationConstraint": "eu-west-3"},
        ObjectLockEnabledForBucket=lock,
    )


def run_jobs(app: Flask) -> tuple[int, int]:
    """Run the app's pending jobs (e-mails, archive copies…) in this process, as
    `flask jobs run` does; the real workers are exercised in tests/test_engine.py."""
    from service.engine.outbox import run_due

    done = failed = 0
    with app.app_context():
        # until none is due: a job may write another (the last archived piece, its manifest)
        for _ in range(10):
            ran = run_due()
            done, failed = done + ran[0], failed + ran[1]
            if not any(ran):
                break
    return done, failed


@pytest.fixture
def own_database(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database of its own (migrated from scratch by make_app)."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'own.sqlite3'}"
        return
    base = request.getfixturevalue("postgres_url")
    name = f"psc_own_{uuid.uuid4().hex[:10]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield base.rsplit("/", 1)[0] + "/" + name
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
