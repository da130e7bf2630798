"""Signatures hardening: the pieces' empty signature fields, certified returns, PDF/A after the
countersignature, active content hidden in direct objects, and a busy machine versus a costly
file. Every result is read back with independent tools (pikepdf, qpdf, pyHanko's validator,
poppler's `pdfsig`)."""

from __future__ import annotations

import functools
import io
import json
import re
import subprocess
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pikepdf
import pytest
from flask import Flask
from flask.testing import FlaskClient
from pikepdf.models.metadata import DOCINFO_MAPPING, decode_pdf_date
from pyhanko.pdf_utils.reader import PdfFileReader
from sqlalchemy import select

from service.extensions import db
from signing.countersign import EMPLOYER_FIELD, INSURER_FIELD, SigningKey, countersign
from signing.errors import Refused, VerificationBusy
from signing.sandbox import Limits, run_limited
from signing.verify import inspect_structure
from storage import sha256_hex
from tests.conftest import auth, run_jobs
from tests.pki import (
    Party,
    Pki,
    sign_pdf,
    sign_pdf_poppler,
    signature_fields,
    with_empty_signature_fields,
)
from tests.test_reference_api import assert_error
from tests.test_returns import PIECES, SIRET, issued_pdf, portal, upload

# -- fixtures and readers ------------------------------------------------------------------


@pytest.fixture
def kit(client: FlaskClient, staff: dict[str, str], employer: dict[str, Any]) -> dict[str, Any]:
    r = client.post(f"/api/v1/employers/{SIRET}/kits", headers=staff)
    assert r.status_code == 201
    return r.json


@pytest.fixture
def employer_auth(client: FlaskClient, kit: dict[str, Any]) -> dict[str, str]:
    r = portal(client, kit["access_code"])
    assert r.status_code == 200, r.json
    return auth(r.json["token"])


@pytest.fixture
def fields_kit(app: Flask, kit: dict[str, Any]) -> dict[str, Any]:
    """The kit whose two contractual pieces carry the empty `SignatureCollectivite` and
    `SignatureAssureur` fields, as rendering issues them (left as issued once it does)."""
    from service.backends import document_store
    from service.kits.models import KitDocument

    with app.app_context():
        store = document_store()
        docs = db.session.scalars(
            select(KitDocument).where(
                KitDocument.kit_id == kit["id"], KitDocument.requires_signature.is_(True)
            )
        ).all()
        assert sorted(d.kind for d in docs) == sorted(PIECES)
        for doc in docs:
            data = with_empty_signature_fields(store.get(doc.pdf_key))
            store.put(doc.pdf_key, data, sha256=sha256_hex(data), content_type="application/pdf")
            doc.sha256 = sha256_hex(data)
        db.session.commit()
    return kit


def pdfsig_report(data: bytes) -> str:
    with tempfile.NamedTemporaryFile(suffix=".pdf") as f:
        f.write(data)
        f.flush()
        return subprocess.run(
            ["pdfsig", "-nocert", f.name], capture_output=True, text=True, timeout=60
        ).stdout


def validate_all(data: bytes) -> list[Any]:
    """pyHanko's own validator over every signature (integrity, DocMDP, diff analysis)."""
    from pyhanko.sign.validation import validate_pdf_signature
    from pyhanko_certvalidator import ValidationContext

    reader = PdfFileReader(io.BytesIO(data), strict=False)  # poppler reuses generations
    return [
        validate_pdf_signature(sig, ValidationContext(trust_roots=[]))
        for sig in reader.embedded_signatures
    ]


def assert_all_signatures_valid(data: bytes, count: int) -> None:
    from pyhanko.sign.diff_analysis import ModificationLevel

    statuses = validate_all(data)
    assert len(statuses) == count
    for status in statuses:
        assert status.intact and status.valid, status.pretty_print_details()
        assert status.docmdp_ok is not False, status.pretty_print_details()
        assert status.modification_level <= ModificationLevel.FORM_FILLING
    report = pdfsig_report(data)
    assert report.count("Signature is Valid") == count, report


def assert_info_matches_xmp(data: bytes) -> None:
    """PDF/A: every entry of the Info dictionary says what the XMP metadata says."""
    with pikepdf.open(io.BytesIO(data)) as pdf:
        info = pdf.docinfo
        assert "/ModDate" in info and "/Producer" in info
        meta = pdf.open_metadata(set_pikepdf_as_editor=False)
        compared = 0
        for uri, local, key, _ in DOCINFO_MAPPING:
            if key not in info:
                continue
            xmp = meta.get(f"{{{uri}}}{local}")
            assert xmp is not None, key
            value = str(info[key])
            if key in ("/ModDate", "/CreationDate"):
                assert decode_pdf_date(value) == datetime.fromisoformat(xmp), key
            elif key == "/Author":
                assert value in xmp, key
            else:
                assert value == str(xmp), key
            compared += 1
        assert compared >= 4


def unembedded_fonts(data: bytes) -> set[str]:
    """Every font reachable in the file (pages, annotation appearances…, direct or not) that
    has no font program, as pikepdf reads it."""
    missing: set[str] = set()
    with pikepdf.open(io.BytesIO(data)) as pdf:
        seen: set[tuple[int, int]] = set()
        stack: list[Any] = [pdf.trailer]
        while stack:
            item = stack.pop()
            if not isinstance(item, pikepdf.Dictionary | pikepdf.Array | pikepdf.Stream):
                continue
            if item.is_indirect:
                if item.objgen in seen:
                    continue
                seen.add(item.objgen)
            if isinstance(item, pikepdf.Stream):
                item = item.stream_dict
            if isinstance(item, pikepdf.Array):
                stack.extend(item)
                continue
            if item.get("/Type") == "/Font" and item.get("/Subtype") not in ("/Type0", "/Type3"):
                descriptor = item.get("/FontDescriptor")
                if descriptor is None or not any(
                    key in descriptor for key in ("/FontFile", "/FontFile2", "/FontFile3")
                ):
                    missing.add(str(item.get("/BaseFont")))
            stack.extend(value for key, value in item.items() if key not in ("/Parent", "/P"))
    return missing


def countersigned_copies(
    client: FlaskClient, staff: dict[str, str], kit: dict[str, Any]
) -> dict[str, bytes]:
    r = client.post(f"/api/v1/kits/{kit['id']}/countersign", headers=staff)
    assert r.status_code == 200, r.json
    copies = {}
    for kind in PIECES:
        signed = client.get(f"/api/v1/kits/{kit['id']}/documents/{kind}/signed.pdf", headers=staff)
        assert signed.status_code == 200
        copies[kind] = signed.data
    return copies


def stored_verification(app: Flask, return_id: int) -> dict[str, Any]:
    from service.returns.models import KitReturn

    with app.app_context():
        return dict(db.session.get(KitReturn, return_id).verification)


# -- empty signature fields, two signing tools ----------------------------------------------


def test_empty_fields_helper_is_a_no_op_once_present() -> None:
    writer = pikepdf.new()
    writer.add_blank_page()
    buffer = io.BytesIO()
    writer.save(buffer)
    once = with_empty_signature_fields(buffer.getvalue())
    assert signature_fields(once) == {EMPLOYER_FIELD: False, INSURER_FIELD: False}
    assert with_empty_signature_fields(once) == once


def test_returns_signed_by_two_tools_are_accepted_and_countersigned_in_the_insurer_field(
    app: Flask,
    client: FlaskClient,
    staff: dict[str, str],
    fields_kit: dict[str, Any],
    employer_auth: dict[str, str],
    pki: Pki,
    artifacts: Path,
) -> None:
    kit = fields_kit
    issued = {kind: issued_pdf(client, staff, kit, kind) for kind in PIECES}
    # pyHanko fills the collectivité's empty field; poppler (NSS) adds a field of its own
    # RSA: an ECDSA signature makes pyHanko declare PDF 2.0 (see the test below)
    by_pyhanko = sign_pdf(issued[PIECES[0]], pki.trusted_rsa, field=EMPLOYER_FIELD)
    by_poppler = sign_pdf_poppler(issued[PIECES[1]], pki.trusted_rsa)
    assert signature_fields(by_pyhanko) == {EMPLOYER_FIELD: True, INSURER_FIELD: False}
    assert signature_fields(by_poppler)["Signature_poppler"] is True
    for kind, data in zip(PIECES, (by_pyhanko, by_poppler), strict=True):
        r = upload(client, employer_auth, kit, kind, data)
        assert r.status_code == 201, r.json
        assert r.json["status"] == "accepted", r.json
        assert r.json["pdfa_preserved"] is True and r.json["pdfa_reason"] is None
        assert stored_verification(app, r.json["id"])["pdfa_preserved"] is True

    copies = countersigned_copies(client, staff, kit)
    for kind, data in copies.items():
        (artifacts / f"hardening-countersigned-{kind}.pdf").write_bytes(data)
        assert data.startswith(issued[kind])  # incremental
        fields = signature_fields(data)
        # the insurer's existing field is filled: no field added
        assert fields[INSURER_FIELD] is True and "Contreseing_assureur" not in fields
        assert len(fields) == len(signature_fields(issued[kind])) + (kind == PIECES[1])
        with pikepdf.open(io.BytesIO(issued[kind])) as pdf:
            empty = next(f for f in pdf.Root.AcroForm.Fields if str(f.get("/T")) == INSURER_FIELD)
            cell = [round(float(v)) for v in empty.Rect]
        with pikepdf.open(io.BytesIO(data)) as pdf:
            widget = next(f for f in pdf.Root.AcroForm.Fields if str(f.get("/T")) == INSURER_FIELD)
            assert [round(float(v)) for v in widget.Rect] == cell  # signed where it was issued
            assert "/N" in widget.AP  # the visible block is drawn in the cell
        assert_all_signatures_valid(data, 2)
        assert_info_matches_xmp(data)
        assert unembedded_fonts(data) == set()
        # the block's time is Paris time, in words (poppler reads the drawn text)
        text = " ".join(pdftotext(data).split())
        assert "UTC" not in text.partition("Contresigné pour")[2]  # the employer's says UTC
        assert re.search(
            r"Contresigné pour .+ le \d{1,2}(?:er)? [a-zéû]+ \d{4} à \d{1,2} h \d\d "
            r"\(heure de Paris\)",
            text,
        ), text


# -- certified returns -----------------------------------------------------------------------


def test_certified_returns_no_changes_refused_form_filling_stays_valid_after_countersign(
    client: FlaskClient,
    staff: dict[str, str],
    fields_kit: dict[str, Any],
    employer_auth: dict[str, str],
    pki: Pki,
) -> None:
    kit = fields_kit
    issued = issued_pdf(client, staff, kit, PIECES[0])
    locked = sign_pdf(issued, pki.trusted, field=EMPLOYER_FIELD, certify=1)
    assert validate_all(locked)[0].docmdp_ok  # a valid certification, no change allowed
    r = upload(client, employer_auth, kit, PIECES[0], locked)
    assert_error(r, 422, "certified_no_changes", "file")
    assert "certifié" in r.json["error"]["message"]
    assert "contreseing" in r.json["error"]["message"]

    fill_forms = sign_pdf(issued, pki.trusted, field=EMPLOYER_FIELD, certify=2)
    r = upload(client, employer_auth, kit, PIECES[0], fill_forms)
    assert r.status_code == 201 and r.json["status"] == "accepted", r.json
    other = sign_pdf(issued_pdf(client, staff, kit, PIECES[1]), pki.trusted, field=EMPLOYER_FIELD)
    assert upload(client, employer_auth, kit, PIECES[1], other).json["status"] == "accepted"

    data = countersigned_copies(client, staff, kit)[PIECES[0]]
    assert signature_fields(data) == {EMPLOYER_FIELD: True, INSURER_FIELD: True}
    assert_all_signatures_valid(data, 2)
    certification = validate_all(data)[0]
    assert certification.docmdp_ok and certification.modification_level is not None


def _blank_pdf() -> bytes:
    pdf = pikepdf.new()
    pdf.add_blank_page(page_size=(595, 842))
    buffer = io.BytesIO()
    pdf.save(buffer)
    return buffer.getvalue()


def _key(party: Party) -> SigningKey:
    return SigningKey(signer=party.signer(), fingerprint="", subject="Assureur", development=True)


def test_countersign_of_a_certified_piece_without_insurer_field_keeps_it_valid(
    pki: Pki,
) -> None:
    certified = sign_pdf(_blank_pdf(), pki.trusted, certify=2)
    data = countersign(certified, _key(pki.untrusted), signer_label="Allianz Vie")
    # a new visible annotation would break the certification: the signature is invisible
    fields = signature_fields(data)
    assert fields == {"SignatureCollectivite": True, "Contreseing_assureur": True}
    with pikepdf.open(io.BytesIO(data)) as pdf:
        widget = next(
            f for f in pdf.Root.AcroForm.Fields if str(f.get("/T")) == "Contreseing_assureur"
        )
        assert [float(v) for v in widget.Rect] == [0, 0, 0, 0]
    assert_all_signatures_valid(data, 2)


def pdftotext(data: bytes) -> str:
    return subprocess.run(
        ["pdftotext", "-", "-"], input=data, capture_output=True, check=True
    ).stdout.decode()


@pytest.mark.parametrize(
    ("zone", "expected"),
    [
        ("Europe/Paris", "le 22 novembre 2026 à 16 h 46 (heure de Paris)"),
        ("Europe/Paris", "le 1er juillet 2026 à 0 h 05 (heure de Paris)"),
        ("America/Cayenne", "le 22 novembre 2026 à 12 h 46 (heure locale, America/Cayenne)"),
    ],
)
def test_countersign_stamp_says_the_signing_time_in_the_given_zone_in_french(
    pki: Pki, zone: str, expected: str
) -> None:
    moment = (
        datetime(2026, 6, 30, 22, 5, 59, tzinfo=UTC)
        if "juillet" in expected
        else datetime(2026, 11, 22, 15, 46, 43, tzinfo=UTC)
    )
    data = countersign(
        _blank_pdf(),
        _key(pki.untrusted),
        signer_label="Allianz Vie (gestionnaire Sofaxis)",
        time_zone=zone,
        signing_time=moment,
    )
    text = " ".join(pdftotext(data).split())
    assert f"Contresigné pour Allianz Vie (gestionnaire Sofaxis) {expected}" in text, text
    assert "UTC" not in text
    # the signature records the very instant the block shows (pyHanko's own reading)
    [signature] = PdfFileReader(io.BytesIO(data)).embedded_signatures
    assert signature.self_reported_timestamp == moment.replace(microsecond=0)


@pytest.mark.parametrize("backend", ["sqlite"])
@pytest.mark.parametrize("app_config", [{"TIMEZONE": "America/Cayenne"}])
def test_countersign_stamp_follows_the_service_time_zone(
    client: FlaskClient,
    staff: dict[str, str],
    kit: dict[str, Any],
    employer_auth: dict[str, str],
    pki: Pki,
) -> None:
    for kind in PIECES:
        signed = sign_pdf(issued_pdf(client, staff, kit, kind), pki.trusted_rsa)
        assert upload(client, employer_auth, kit, kind, signed).json["status"] == "accepted"
    for data in countersigned_copies(client, staff, kit).values():
        text = " ".join(pdftotext(data).split())
        assert re.search(
            r"Contresigné pour .+ le \d{1,2}(?:er)? [a-zéû]+ \d{4} à \d{1,2} h \d\d "
            r"\(heure locale, America/Cayenne\)",
            text,
        ), text
        [*_, insurer] = PdfFileReader(io.BytesIO(data), strict=False).embedded_signatures
        moment = insurer.self_reported_timestamp.astimezone(ZoneInfo("America/Cayenne"))
        assert f"à {moment.hour} h {moment.minute:02d} (heure locale" in text


# -- PDF/A: fonts of the employer's signature appearance ------------------------------------


def test_unembedded_signature_font_is_reported_in_the_verdict_and_the_manifest(
    app: Flask,
    client: FlaskClient,
    staff: dict[str, str],
    fields_kit: dict[str, Any],
    employer_auth: dict[str, str],
    pki: Pki,
) -> None:
    kit = fields_kit
    courier = sign_pdf(
        issued_pdf(client, staff, kit, PIECES[0]),
        pki.trusted,
        field=EMPLOYER_FIELD,
        embedded_font=False,
    )
    assert unembedded_fonts(courier) == {"/Courier"}  # pikepdf's reading of it
    r = upload(client, employer_auth, kit, PIECES[0], courier)
    assert r.status_code == 201 and r.json["status"] == "accepted", r.json
    assert r.json["pdfa_preserved"] is False and "PDF/A" in r.json["pdfa_reason"]
    verification = stored_verification(app, r.json["id"])
    assert verification["pdfa_preserved"] is False
    assert "Courier" in verification["pdfa_reason"] and "PDF/A" in verification["pdfa_reason"]
    good = sign_pdf(
        issued_pdf(client, staff, kit, PIECES[1]), pki.trusted_rsa, field=EMPLOYER_FIELD
    )
    assert upload(client, employer_auth, kit, PIECES[1], good).status_code == 201

    copies = countersigned_copies(client, staff, kit)
    assert unembedded_fonts(copies[PIECES[0]]) == {"/Courier"}
    run_jobs(app)  # the archive copies, as a worker runs them
    records = client.get("/api/v1/archive?cdg=81", headers=staff).json["items"]
    manifest_id = next(r["id"] for r in records if r["kind"] == "manifest")
    manifest = json.loads(client.get(f"/api/v1/archive/{manifest_id}/content", headers=staff).data)
    preserved = {d["kind"]: d["pdfa_preserved"] for d in manifest["documents"]}
    assert preserved == {PIECES[0]: False, PIECES[1]: True}


def test_return_declared_pdf2_by_its_signing_tool_is_reported_as_no_longer_pdfa(
    client: FlaskClient,
    staff: dict[str, str],
    fields_kit: dict[str, Any],
    employer_auth: dict[str, str],
    pki: Pki,
) -> None:
    issued = issued_pdf(client, staff, fields_kit, PIECES[0])
    ecdsa = sign_pdf(issued, pki.trusted, field=EMPLOYER_FIELD)  # pyHanko + P-256: ISO 32002
    with pikepdf.open(io.BytesIO(ecdsa)) as pdf:
        assert str(pdf.Root.get("/Version")) == "/2.0"  # what the signing tool wrote
    r = upload(client, employer_auth, fields_kit, PIECES[0], ecdsa)
    assert r.status_code == 201 and r.json["status"] == "accepted", r.json
    assert r.json["pdfa_preserved"] is False and "PDF 2.0" in r.json["pdfa_reason"]


def test_countersignature_with_the_development_key_stays_pdf_17(
    client: FlaskClient,
    staff: dict[str, str],
    fields_kit: dict[str, Any],
    employer_auth: dict[str, str],
    pki: Pki,
) -> None:
    for kind in PIECES:
        signed = sign_pdf(
            issued_pdf(client, staff, fields_kit, kind), pki.trusted_rsa, field=EMPLOYER_FIELD
        )
        assert upload(client, employer_auth, fields_kit, kind, signed).status_code == 201
    for data in countersigned_copies(client, staff, fields_kit).values():
        with pikepdf.open(io.BytesIO(data)) as pdf:
            assert pdf.pdf_version == "1.7" and "/Version" not in pdf.Root
        assert_all_signatures_valid(data, 2)


# -- active content in direct objects ------------------------------------------------------


def _with(place: str) -> bytes:
    """A one-page PDF whose JavaScript or launch action is a direct object nested in `place`."""
    pdf = pikepdf.new()
    pdf.add_blank_page(page_size=(595, 842))
    page = pdf.pages[0].obj
    js = pikepdf.Dictionary(S=pikepdf.Name.JavaScript, JS=pikepdf.String("app.alert(1)"))
    launch = pikepdf.Dictionary(S=pikepdf.Name.Launch, F=pikepdf.String("calc.exe"))
    if place == "catalog_name_tree":
        pdf.Root.Names = pikepdf.Dictionary(
            Dests=pikepdf.Dictionary(
                Names=pikepdf.Array([pikepdf.String("a"), pikepdf.Dictionary(D=js)])
            )
        )
    elif place == "page_additional_actions":
        page.AA = pikepdf.Dictionary(O=launch)
    elif place == "annotation_action":
        page.Annots = pikepdf.Array(
            [
                pikepdf.Dictionary(
                    Type=pikepdf.Name.Annot,
                    Subtype=pikepdf.Name.Link,
                    Rect=pikepdf.Array([0, 0, 10, 10]),
                    A=js,
                )
            ]
        )
    elif place == "form_field":
        pdf.Root.AcroForm = pikepdf.Dictionary(
            Fields=pikepdf.Array(
                [
                    pikepdf.Dictionary(
                        FT=pikepdf.Name.Tx,
                        T=pikepdf.String("nom"),
                        AA=pikepdf.Dictionary(K=js),
                    )
                ]
            )
        )
    elif place == "deep_arrays":
        page.Foo = pikepdf.Array([pikepdf.Array([pikepdf.Array([pikepdf.Array([launch])])])])
    elif place == "stream_dictionary":
        stream = pdf.make_stream(b"q Q")
        stream.Extra = pikepdf.Dictionary(Next=js)
        page.Contents = stream
    buffer = io.BytesIO()
    pdf.save(buffer, object_stream_mode=pikepdf.ObjectStreamMode.preserve)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "place",
    [
        "catalog_name_tree",
        "page_additional_actions",
        "annotation_action",
        "form_field",
        "deep_arrays",
        "stream_dictionary",
    ],
)
def test_active_content_nested_in_direct_objects_is_refused(place: str) -> None:
    data = _with(place)
    # qpdf confirms the action is in the file, never as an object of its own
    with tempfile.NamedTemporaryFile(suffix=".pdf") as f:
        f.write(data)
        f.flush()
        shown = subprocess.run(
            ["qpdf", "--json=2", "--json-key=qpdf", f.name],
            capture_output=True,
            check=True,
            timeout=60,
        )
    objects = [
        entry.get("value") or entry.get("stream", {}).get("dict")
        for entry in json.loads(shown.stdout)["qpdf"][1].values()
    ]
    text = json.dumps(objects)
    assert '"/S": "/JavaScript"' in text or '"/S": "/Launch"' in text
    assert not any(
        isinstance(value, dict) and value.get("/S") in ("/JavaScript", "/Launch")
        for value in objects
    )
    with pytest.raises(Refused) as refusal:
        run_limited(inspect_structure, data)
    assert refusal.value.code == "active_content"
    assert refusal.value.details


def test_active_content_walk_is_bounded() -> None:
    pdf = pikepdf.new()
    pdf.add_blank_page(page_size=(595, 842))
    pdf.pages[0].obj.Junk = pikepdf.Array([pikepdf.Array([1, 2]) for _ in range(5000)])
    buffer = io.BytesIO()
    pdf.save(buffer)
    data = buffer.getvalue()
    inspect_structure(data)  # well under the default bound
    with pytest.raises(Refused) as refusal:
        inspect_structure(data, max_nodes=1000)
    assert refusal.value.code == "malformed_pdf"


# -- CPU budget versus a busy machine --------------------------------------------------------


def _nap(seconds: float) -> str:
    time.sleep(seconds)
    return "lu"


def _spin() -> None:
    while True:
        pass


def test_sandbox_counts_cpu_time_not_waiting() -> None:
    # 1.5 s of waiting on a 1 s CPU budget: a wall-clock deadline refused this before
    assert run_limited(_nap, 1.5, limits=Limits(seconds=1, wall_seconds=20)) == "lu"


def test_sandbox_refuses_a_file_that_spends_its_cpu_budget() -> None:
    with pytest.raises(Refused) as refusal:
        run_limited(_spin, limits=Limits(seconds=0.5, wall_seconds=60))
    assert refusal.value.code == "malformed_pdf"


def test_sandbox_out_of_wall_clock_with_cpu_left_is_busy_not_a_verdict() -> None:
    start = time.monotonic()
    with pytest.raises(VerificationBusy):
        run_limited(_nap, 5, limits=Limits(seconds=2, wall_seconds=0.3))
    assert time.monotonic() - start < 3


def test_busy_verification_is_a_503_and_keeps_nothing(
    app: Flask,
    client: FlaskClient,
    staff: dict[str, str],
    kit: dict[str, Any],
    employer_auth: dict[str, str],
    pki: Pki,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from service.backends import document_store
    from service.returns import actions
    from service.returns.domain import ReturnContext
    from service.returns.models import KitReturn

    signed = sign_pdf(issued_pdf(client, staff, kit, PIECES[0]), pki.trusted)
    # a machine so loaded that the verification gets no CPU before its wall-clock deadline
    busy = functools.partial(ReturnContext, limits=Limits(seconds=5, wall_seconds=0.01))
    monkeypatch.setattr(actions, "ReturnContext", busy)
    r = upload(client, employer_auth, kit, PIECES[0], signed)
    assert_error(r, 503, "verification_busy")
    assert int(r.headers["Retry-After"]) > 0
    assert "réessayez dans quelques instants" in r.json["error"]["message"]
    with app.app_context():
        assert db.session.scalars(select(KitReturn)).all() == []
        assert [o.key for o in document_store().list("quarantine/")] == []
        assert [o.key for o in document_store().list("returns/")] == []
    events = client.get(f"/api/v1/kits/{kit['id']}/events", headers=staff).json["items"]
    assert not any(e["event"].startswith("return_") for e in events)

    monkeypatch.undo()
    r = upload(client, employer_auth, kit, PIECES[0], signed)
    assert r.status_code == 201 and r.json["status"] == "accepted", r.json
