"""The commands of the README, run for real: migrations, accounts, demo data."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from flask import Flask
from flask.testing import FlaskClient

from tests.conftest import ROOT, auth


def flask_cmd(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "INSTANCE_PATH": str(tmp_path / "instance")}
    env.pop("DATABASE_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "flask", "--app", "service", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_fresh_instance_upgrade_demo_and_token(tmp_path: Path) -> None:
    """The embedded defaults: a SQLite file and local folders in the instance folder."""
    assert flask_cmd(tmp_path, "db", "upgrade").returncode == 0
    assert (tmp_path / "instance" / "psc.sqlite3").exists()
    r = flask_cmd(tmp_path, "demo", "load")
    assert r.returncode == 0, r.stderr
    assert "12 employeurs ajoutés" in r.stdout
    credentials = (tmp_path / "instance" / "demo-credentials.txt").read_text()
    assert credentials.count("psc_") == 3
    # the roles in French, as printed by `flask demo credentials` (what `make run` shows)
    r = flask_cmd(tmp_path, "demo", "credentials")
    assert r.returncode == 0 and r.stdout.count("psc_") == 3, r.stderr
    for role in ("Administrateur", "Gestionnaire", "Centre de gestion"):
        assert f"  {role} " in r.stdout
    for code in ("admin ", "staff ", "cdg ", "`"):
        assert code not in r.stdout, code
    r = flask_cmd(tmp_path, "demo", "load")
    assert "0 employeur ajouté" in r.stdout  # idempotent
    # a kit sent to the (folder) broker: no library chatter in the middle of the command's output
    r = flask_cmd(tmp_path, "kits", "issue", "--siret", "21810004800014")
    assert r.returncode == 0 and "émis pour la commune d'Albi" in r.stdout, r.stderr
    assert "pikepdf" not in r.stderr and "No hostname was supplied" not in r.stderr, r.stderr
    r = flask_cmd(
        tmp_path,
        "users",
        "create",
        "--role",
        "staff",
        "--email",
        "Agent@Assureur.fr",
        "--password",
        "un mot de passe long",
    )
    assert r.returncode == 0, r.stderr
    token = r.stdout.strip().splitlines()[-1]
    assert token.startswith("psc_") and len(token) > 40
    r = flask_cmd(tmp_path, "users", "create", "--role", "staff", "--email", "agent@assureur.fr")
    assert r.returncode == 1 and "duplicate_user" in r.stderr


def test_users_create_token_works_and_cdg_needs_a_known_cdg(
    app: Flask, client: FlaskClient, convention: dict
) -> None:
    runner = app.test_cli_runner()
    result = runner.invoke(
        args=["users", "create", "--role", "cdg", "--cdg", "81", "--email", "suivi@cdg81.fr"]
    )
    assert result.exit_code == 0, result.output
    token = result.output.strip().splitlines()[-1]
    assert client.get("/api/v1/cdgs/81", headers=auth(token)).status_code == 200
    assert client.get("/api/v1/cdgs", headers=auth(token)).status_code == 403
    result = runner.invoke(
        args=["users", "create", "--role", "cdg", "--cdg", "99", "--email", "x@cdg99.fr"]
    )
    assert result.exit_code == 1
    result = runner.invoke(
        args=["users", "create", "--role", "staff", "--email", "a@b.fr", "--password", "court"]
    )
    assert result.exit_code == 1


def test_demo_load_all_has_every_commune_and_epci(app: Flask, client: FlaskClient) -> None:
    from service.demo.load import load_demo

    with app.app_context():
        result = load_demo(everything=True)
    assert result.employers_created == 314 + 16
    runner = app.test_cli_runner()
    token = (
        runner.invoke(args=["users", "create", "--role", "staff", "--email", "p@assureur.fr"])
        .output.strip()
        .splitlines()[-1]
    )
    page = client.get("/api/v1/employers?cdg=81&q=œuilly", headers=auth(token)).json
    assert page["total"] == 0  # not a Tarn commune: the search is real
    page = client.get("/api/v1/employers?cdg=81&q=castres", headers=auth(token)).json
    assert page["total"] >= 1
    assert client.get("/api/v1/employers?limit=200", headers=auth(token)).json["total"] == 330
