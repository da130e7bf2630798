"""Demonstration data: the Tarn CDG, its 2025–2030 convention, employers from real communes."""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select

from service import labels
from service.accounts.auth import create_user
from service.accounts.models import User
from service.backends import document_store
from service.extensions import db
from service.formatting import capitalize_first
from service.reference import domain
from service.reference.models import Cdg, Convention, Employer
from service.reference.rules import siret_from_siren
from service.subscriptions.domain import record_placeholders

FIXTURE = Path(__file__).resolve().parent / "tarn.json"
CDG = {
    "code": "81",
    "name": "Centre de gestion de la fonction publique territoriale du Tarn",
    "email": "prevoyance@cdg81.fr",
}
CONVENTION = {
    "cdg": "81",
    "reference": "CDG81-PREV-2025-2030",
    "insurer": "Allianz Vie",
    "manager": "Collecteam",
    "starts_on": date(2025, 1, 1),
    "ends_on": date(2030, 12, 31),
    "base_rate": "2.30",
    "cdg_fee_rate": "1.10",
    "options": [
        {"code": "perte_retraite", "label": "Perte de retraite", "rate": "0.45"},
        {"code": "deces", "label": "Décès – capital de 100 % du traitement annuel", "rate": "0.30"},
    ],
    "insurer_legal_form": "société anonyme",
    "insurer_capital": "681879255",
    "insurer_register": "340 234 962 RCS Nanterre",
    "insurer_address": "1 cours Michelet, CS 30051, 92076 Paris La Défense Cedex",
    # the Tarn convention runs under décret n° 2022-581 (issue 12: said, not defaulted)
    "regime": "facultative",
}
DEMO_USERS = (
    ("admin", "admin@psc.demo.fr", None),
    ("staff", "production@psc.demo.fr", None),
    ("cdg", "suivi@cdg81.fr", "81"),
)
DEFAULT_COUNT = 12


def _slug(name: str) -> str:
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")


@dataclass(frozen=True)
class DemoResult:
    cdg_created: bool
    employers_created: int
    credentials: list[tuple[str, str, str, str]]  # role, email, password, token


def credential_line(role: str, email: str, password: str, token: str) -> str:
    """One demo account as printed and written: its role in French, never the code."""
    return (
        f"  {capitalize_first(labels.role(role)):<18} {email:<24} mot de passe : {password}  "
        f"jeton : {token}"
    )


def _employer_rows(data: dict[str, Any], everything: bool) -> list[dict[str, Any]]:
    communes = sorted(data["communes"], key=lambda c: -c["population"])
    epcis = sorted(data["epcis"], key=lambda e: -e["population"])
    if not everything:
        communes, epcis = communes[: DEFAULT_COUNT - 2], epcis[:2]
    rows = []
    for i, c in enumerate(communes):
        rows.append(
            {
                "siret": siret_from_siren(c["siren"]),
                "name": c["name"],
                "kind": "commune",
                "address": f"Mairie, {c['postcode']} {c['name']}",
                "email": f"{_slug(c['name'])}@demo-psc.fr",
                "headcount": max(1, c["population"] // 90),
                "index": i,
            }
        )
    for i, e in enumerate(epcis):
        rows.append(
            {
                "siret": siret_from_siren(e["siren"]),
                "name": e["name"],
                "kind": e["kind"] if e["kind"] in ("cc", "ca") else "etablissement",
                "address": f"Siège, {e['name']}, Tarn",
                "email": f"{_slug(e['name'])[:40]}@demo-psc.fr",
                "headcount": max(5, e["population"] // 150),
                "index": len(communes) + i,
            }
        )
    return rows


def load_demo(*, everything: bool = False, instance_path: Path | None = None) -> DemoResult:
    """Create what is missing; running it twice changes nothing."""
    data = json.loads(FIXTURE.read_text(encoding="utf-8"))
    cdg = db.session.scalar(select(Cdg).where(Cdg.code == CDG["code"]))
    cdg_created = cdg is None
    if cdg is None:
        cdg = domain.create_cdg(**CDG)
    convention = db.session.scalar(
        select(Convention).where(
            Convention.cdg_id == cdg.id, Convention.reference == CONVENTION["reference"]
        )
    )
    if convention is None:
        convention = domain.create_convention(**CONVENTION)
    existing = set(db.session.scalars(select(Employer.siret)))
    created = 0
    for row in _employer_rows(data, everything):
        if row["siret"] in existing:
            continue
        index = row.pop("index")
        cst = date(2024, 9, 2) + timedelta(days=(index * 3) % 60)
        if index % 4 == 3:
            contribution: dict[str, Any] = {
                "mode": "by_category",
                "amounts": {"A": "10.00", "B": "15.00", "C": "20.00"},
                "criteria": "Modulation selon la catégorie hiérarchique, pour aider davantage "
                "les agents aux rémunérations les plus modestes.",
            }
        else:
            contribution = {"mode": "flat", "amount": f"{12 + (index % 4) * 3}.00"}
        employer = domain.create_employer(
            **row,
            cdg=cdg.code,
            convention_id=convention.id,
            cst_opinion_on=cst,
            deliberation_on=cst + timedelta(days=28),
            contribution=contribution,
            joins_on=date(2025, 1, 1),
        )
        # hE: its papers, as received by post (placeholder PDFs labelled as demo)
        record_placeholders(
            employer,
            actor="system",
            store=document_store(),
            received_on=cst + timedelta(days=35),
        )
        created += 1
    credentials = []
    for role, email, cdg_code in DEMO_USERS:
        if db.session.scalar(select(User).where(User.email == email)) is None:
            password = f"demo-{role}-2025"
            _, token = create_user(email=email, role=role, cdg_code=cdg_code, password=password)
            credentials.append((role, email, password, token))
    db.session.commit()
    if credentials and instance_path is not None:
        lines = ["Comptes de démonstration (créés avec les données de démonstration) :"]
        lines += [credential_line(*account) for account in credentials]
        path = instance_path / "demo-credentials.txt"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        path.chmod(0o600)
    return DemoResult(cdg_created, created, credentials)
