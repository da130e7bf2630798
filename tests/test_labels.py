"""One place for labels, times, CSV cells and file names (issues 8/9)."""

from __future__ import annotations

import csv
import hashlib
import io
import zipfile
from datetime import date, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from service import labels
from service.audit.models import AuditEvent
from service.backends import document_store
from service.csvfile import safe_cell
from service.extensions import db
from service.kits import domain as kits
from service.kits.models import Kit
from service.kits.proof import gather_facts
from service.kits.render import SPECS, kit_zip
from service.reference.models import Employer
from service.timeutil import local, utcnow
from tests.conftest import auth, create_token, employer_payload, record_prerequisites
from tests.test_pages import csrf, sign_in
from tests.test_returns import PIECES, SIRET, blank_pdf, portal, upload

GROUPED = "218 100 048 00014"


def issue(client: FlaskClient, staff: dict[str, str], siret: str = SIRET) -> dict[str, Any]:
    r = client.post(f"/api/v1/employers/{siret}/kits", headers=staff)
    assert r.status_code == 201, r.json
    return r.json


# -- pure functions -----------------------------------------------------------------------------


def test_actor_failed_portal_attempt_reads_as_an_attempt_not_the_employer() -> None:
    assert labels.actor(f"portail:{SIRET}") == f"tentative pour le SIRET {GROUPED}"
    # even when the employer's name is known: a stranger's guess is not the collectivité's act
    names = {SIRET: "Albi"}
    assert labels.actor(f"portail:{SIRET}", names=names) == f"tentative pour le SIRET {GROUPED}"
    assert labels.actor(f"employer:{SIRET}") == f"la collectivité (SIRET {GROUPED})"
    assert (
        labels.actor(f"employer:{SIRET}", names=names) == f"la collectivité Albi (SIRET {GROUPED})"
    )


def test_actor_staff_email_hidden_when_asked_and_codes_never_leak() -> None:
    assert labels.actor("staff:a@b.fr") == "gestionnaire a@b.fr"
    assert labels.actor("staff:a@b.fr", staff_names=False) == "gestionnaire"
    assert labels.actor("cdg:None") == "centre de gestion"
    assert labels.actor("system") == "le service"
    assert labels.actor("cli") == "commande d'administration"
    assert labels.actor("cli:root") == "commande d'administration (utilisateur système root)"
    assert labels.actor("cli:root", staff_names=False) == "commande d'administration"
    assert labels.actor("robot") == "utilisateur du service"
    assert labels.actor("robot:x") == "utilisateur du service"
    assert labels.actor(None) == "—"


def test_document_titles_come_from_the_render_specs() -> None:
    for kind, spec in SPECS.items():
        assert labels.document(kind) == spec.title
    assert labels.document("access-letter") == SPECS["access-letter"].title
    assert labels.document("proof") == "Certificat de preuve"
    assert labels.document("zip") == "Kit complet (ZIP)"
    assert labels.document("no-such-kind") == "Document"
    assert not set(SPECS) & set(labels.DOCUMENTS)  # one table per title


def test_file_names_are_french_titles_never_codes() -> None:
    assert labels.file_name("special-conditions") == "conditions-particulieres"
    assert labels.file_name("membership-agreement") == "convention-d-adhesion"
    ref = "PSC-81-2026-000001"
    assert labels.download_name(ref, "special-conditions") == (
        "PSC-81-2026-000001-conditions-particulieres.pdf"
    )
    assert labels.download_name(ref, "special-conditions", copy="signed") == (
        "PSC-81-2026-000001-conditions-particulieres-signee.pdf"
    )
    assert labels.download_name(ref, "membership-agreement", copy="countersigned", ext="pdf") == (
        "PSC-81-2026-000001-convention-d-adhesion-contresignee.pdf"
    )
    assert labels.download_name(ref, "special-conditions", ext="docx").endswith(
        "-conditions-particulieres.docx"
    )
    for kind in SPECS:
        assert kind not in labels.file_name(kind)


def test_employer_kind_is_the_french_label() -> None:
    assert labels.employer_kind("ca") == "Communauté d'agglomération"
    assert labels.employer_kind("etablissement") == "Établissement public local"
    assert labels.employer_kind("unknown") == "Collectivité"


def test_zone_label_names_paris_in_french_and_other_zones_by_name() -> None:
    assert labels.zone_label("Europe/Paris") == "heure de Paris"
    assert labels.zone_label("America/Cayenne") == "heure locale (America/Cayenne)"
    assert local(datetime(2026, 1, 15, 23, 30), "America/Cayenne").hour == 20


def test_safe_cell_neutralises_a_nul_first_cell() -> None:
    assert safe_cell("\x00=1+1") == "'\x00=1+1"
    assert safe_cell("=SUM(A1)") == "'=SUM(A1)"
    assert safe_cell("Albi") == "Albi"


def test_zip_entries_are_french_names_dated_the_day_of_issue() -> None:
    docs = [(s.title, b"%PDF", None) for s in SPECS.values()]
    data = kit_zip("PSC-81-2026-000001", docs, b"%PDF", dated=date(2026, 3, 9))
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        names = archive.namelist()
        assert names[0] == "PSC-81-2026-000001/01-conditions-particulieres.pdf"
        assert "PSC-81-2026-000001/05-convention-d-adhesion.pdf" in names
        assert not any(kind in name for name in names for kind in SPECS)
        assert {i.date_time for i in archive.infolist()} == {(2026, 3, 9, 0, 0, 0)}


def test_the_zip_format_is_frozen() -> None:
    """A kit's ZIP is made again at each download and compared with the SHA-256 recorded at its
    issue: the same files must give the same bytes for six years (a change to `kit_zip`, to the
    file names or to how `zipfile` writes would only serve the files with a warning)."""
    data = kit_zip(
        "PSC-81-2026-000001",
        [
            ("Conditions particulières", b"%PDF-1.7 a", b"PK docx"),
            ("Notice d'information", b"%PDF-1.7 b", None),
        ],
        b"%PDF-1.7 bundle",
        dated=date(2026, 3, 9),
    )
    assert hashlib.sha256(data).hexdigest() == (
        "99594594faa02ea1233d6839d2ea551b61272c461249513db68e4ab58d4c6685"
    )


# -- with the application -----------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["sqlite"])
@pytest.mark.parametrize("app_config", [{"TIMEZONE": "Pacific/Kiritimati"}])
def test_day_of_issue_and_journal_follow_the_timezone_setting(
    app: Flask, client: FlaskClient, staff: dict[str, str], employer: dict[str, Any]
) -> None:
    zone = "Pacific/Kiritimati"  # UTC+14: its day differs from Paris's half of the time
    with app.app_context():
        assert labels.zone_name() == zone
        employer_row = db.session.scalars(select(Employer).filter_by(siret=SIRET)).one()
        prepared = kits.prepare_kit(employer_row, code_days=30, portal_url="http://x")
        db.session.rollback()
    assert prepared.data.timezone == zone
    assert prepared.data.issued_on in {local(utcnow(), zone).date() - timedelta(d) for d in (0, 1)}
    kit = issue(client, staff)
    sign_in(app, client, "suivi@cdg81.fr", role="cdg", cdg="81")
    page = client.get(f"/kits/{kit['id']}/journal").get_data(as_text=True)
    assert f"heure locale ({zone})" in page and "Paris" not in page
    r = client.get(f"/kits/{kit['id']}/journal.csv")
    assert r.data.decode("utf-8-sig").startswith(f"Date et heure (heure locale ({zone}));")


@pytest.mark.parametrize("backend", ["sqlite"])
def test_superseding_a_kit_is_audited_with_the_new_reference(
    app: Flask, client: FlaskClient, staff: dict[str, str], employer: dict[str, Any]
) -> None:
    first = issue(client, staff)
    second = issue(client, staff)
    with app.app_context():
        old = db.session.get(Kit, first["id"])
        assert old is not None and old.status == "superseded"
        rows = db.session.scalars(
            db.select(AuditEvent).where(
                AuditEvent.kit_id == first["id"], AuditEvent.event == "kit_superseded"
            )
        ).all()
        assert len(rows) == 1
        assert rows[0].details["superseded_by"] == second["reference"]
        assert rows[0].actor == "staff:production@assureur.fr"
        detail = labels.event_details("kit_superseded", rows[0].details)
        assert detail["reason"] == f"remplacé par le kit {second['reference']}"
    assert labels.event("kit_superseded") == "Kit remplacé"
    sign_in(app, client, "suivi@cdg81.fr", role="cdg", cdg="81")
    journal = client.get(f"/kits/{first['id']}/journal").get_data(as_text=True)
    assert "Kit remplacé" in journal and f"remplacé par le kit {second['reference']}" in journal
    with app.app_context():
        old_kit = db.session.get(Kit, first["id"])
        assert old_kit is not None
        facts = gather_facts(old_kit, documents=document_store())
    assert any(e.what == f"Kit remplacé par le kit {second['reference']}" for e in facts.events)


@pytest.mark.parametrize("backend", ["sqlite"])
def test_download_names_in_api_and_portal_are_french(
    client: FlaskClient, staff: dict[str, str], employer: dict[str, Any]
) -> None:
    kit = issue(client, staff)
    r = client.get(f"/api/v1/kits/{kit['id']}/documents/special-conditions.pdf", headers=staff)
    assert r.status_code == 200
    expected = f"{kit['reference']}-conditions-particulieres.pdf"
    assert r.headers["Content-Disposition"] == f'attachment; filename="{expected}"'
    r.close()  # a streamed answer holds its request context until closed
    r = client.get(f"/api/v1/kits/{kit['id']}/documents/membership-agreement.docx", headers=staff)
    assert r.headers["Content-Disposition"].endswith(
        f'filename="{kit["reference"]}-convention-d-adhesion.docx"'
    )
    r.close()
    r = client.get(f"/api/v1/kits/{kit['id']}/kit.zip", headers=staff)
    data = r.data
    r.close()
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        names = archive.namelist()
    assert f"{kit['reference']}/01-conditions-particulieres.pdf" in names
    assert not any("special-conditions" in n for n in names)


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_tracking_csv_writes_french_kinds_and_paris_days(
    app: Flask, client: FlaskClient, staff: dict[str, str], convention: dict[str, Any]
) -> None:
    payload = employer_payload(convention["id"], kind="ca", name="=Castres")
    assert client.post("/api/v1/employers", json=payload, headers=staff).status_code == 201
    record_prerequisites(client.application, payload["siret"])
    kit = issue(client, staff)
    with app.app_context():
        row = db.session.get(Kit, kit["id"])
        assert row is not None
        row.issued_at = datetime(2026, 12, 31, 23, 30)  # 1 January 2027 in Paris
        db.session.commit()
    cdg = auth(create_token(app, "cdg", "suivi@cdg81.fr", cdg="81"))
    r = client.get("/api/v1/cdgs/81/tracking.csv", headers=cdg)
    assert r.status_code == 200
    rows = list(csv.reader(io.StringIO(r.data.decode("utf-8-sig")), delimiter=";"))
    header, line = rows[0], rows[1]
    assert line[header.index("Type")] == "Communauté d'agglomération"
    assert line[header.index("Statut du kit")] == "Émis"
    assert line[header.index("Émis le")] == "01/01/2027"
    assert line[header.index("Collectivité")] == "'=Castres"
    assert line[header.index("SIRET")] == GROUPED


@pytest.mark.parametrize("backend", ["sqlite"])
def test_employer_copy_of_the_proof_hides_staff_and_strangers(
    app: Flask, client: FlaskClient, staff: dict[str, str], employer: dict[str, Any]
) -> None:
    kit = issue(client, staff)
    # a stranger's wrong code from another address
    r = client.post(
        "/api/v1/portal/session",
        json={"siret": SIRET, "access_code": "WRONGWRONGWRONG2"},
        environ_base={"REMOTE_ADDR": "203.0.113.9"},
    )
    assert r.status_code in (401, 403, 422)
    headers = auth(portal(client, kit["access_code"]).json["token"])
    pages = next(d["pages"] for d in kit["documents"] if d["kind"] == PIECES[0])
    received = upload(client, headers, kit, PIECES[0], blank_pdf(pages))
    client.post(
        f"/api/v1/returns/{received.json['id']}/decision", json={"accept": True}, headers=staff
    )
    with app.app_context():
        row = db.session.get(Kit, kit["id"])
        assert row is not None
        staff_copy = gather_facts(row, documents=document_store(), audience="staff")
        employer_copy = gather_facts(row, documents=document_store(), audience="employer")
    attempts = [e for e in staff_copy.events if e.who.startswith("tentative pour le SIRET")]
    assert attempts and attempts[0].address == "203.0.113.9"
    assert attempts[0].who == f"tentative pour le SIRET {GROUPED}"
    hidden = [e for e in employer_copy.events if e.who.startswith("tentative")]
    assert hidden and all(e.address == "" for e in hidden)
    staff_text = repr(staff_copy)
    employer_text = repr(employer_copy)
    assert "production@assureur.fr" in staff_text
    assert "production@assureur.fr" not in employer_text
    assert "203.0.113.9" not in employer_text
    assert employer_copy.returns[0].decision is not None
    assert "par gestionnaire le" in employer_copy.returns[0].decision
    assert not hasattr(employer_copy, "chain_events")
    assert employer_copy.chain_hash == staff_copy.chain_hash != "—"


@pytest.mark.parametrize("backend", ["sqlite"])
def test_proof_page_download_records_the_siret(
    app: Flask, client: FlaskClient, staff: dict[str, str], employer: dict[str, Any]
) -> None:
    kit = issue(client, staff)
    client.post(
        "/portail",
        data={
            "siret": SIRET,
            "access_code": kit["access_code"],
            "csrf_token": csrf(client, "/portail"),
        },
    )
    r = client.get("/portail/certificat-de-preuve.pdf")
    assert r.status_code == 200
    with app.app_context():
        last = db.session.scalars(
            db.select(AuditEvent)
            .where(AuditEvent.kit_id == kit["id"], AuditEvent.event == "downloaded")
            .order_by(AuditEvent.id.desc())
        ).first()
    assert last is not None
    assert last.details == {"file": "proof.pdf"} and last.siret == SIRET
    assert last.actor == f"employer:{SIRET}"
