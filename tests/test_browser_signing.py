"""Signing in the browser (issue 13): the whole flow through the API, codes read from the
outbox the worker writes, the signed file read back by pdfsig and pyHanko, countersigned."""

from __future__ import annotations

import base64
import email
import io
import logging
import re
import subprocess
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from asn1crypto import x509 as asn1_x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12
from flask import Flask
from flask.testing import FlaskClient
from PIL import Image, ImageDraw
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation import validate_pdf_signature
from pyhanko_certvalidator import ValidationContext
from sqlalchemy import update

from service.backends import browser_signing_ca, trust_settings
from service.esign.models import SigningRequest
from service.extensions import db
from service.timeutil import utcnow
from signing import browser as signing_browser
from signing.browser import Signatory, create_dev_ca, issue_leaf, load_ca
from signing.errors import KeyUnavailable
from tests.conftest import auth, employer_payload, make_app, record_prerequisites, run_jobs
from tests.pdftools import pdf_text
from tests.test_reference_api import assert_error
from tests.test_returns import PIECES, SIRET, employer_auth, issued_pdf, kit, portal

__all__ = ["employer_auth", "kit"]  # fixtures used from tests/test_returns.py

SIGNATORY = {"name": "Stéphanie Guiraud-Chaumeil", "title": "Maire", "email": "maire@albi.fr"}
BROWSER = {"REMOTE_ADDR": "198.51.100.7", "HTTP_USER_AGENT": "Mozilla/5.0 (Test; Mobile)"}


def drawing_png(width: int = 600, height: int = 200) -> str:
    image = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    pen = ImageDraw.Draw(image)
    pen.line([(30, 150), (120, 40), (200, 160), (320, 50), (560, 120)], fill="#1a237e", width=6)
    out = io.BytesIO()
    image.save(out, "PNG")
    return "data:image/png;base64," + base64.b64encode(out.getvalue()).decode()


def outbox(app: Flask) -> list[email.message.Message]:
    folder = Path(app.extensions["psc.settings"].instance_path) / "outbox"
    mails = [
        email.message_from_bytes(p.read_bytes(), policy=email.policy.default)
        for p in folder.glob("*.eml")
    ]
    return sorted(mails, key=lambda m: int(m["X-PSC-Job"]))  # in the order they were queued


def last_code(app: Flask, to: str = SIGNATORY["email"]) -> str:
    run_jobs(app)  # the worker sends the queued e-mail
    mails = [m for m in outbox(app) if m["To"] == to and "code de signature" in m["Subject"]]
    assert mails, "no code e-mail"
    body = mails[-1].get_content()
    match = re.search(r"^\s+(\d{6})\s*$", body, re.M)
    assert match, body
    return match.group(1)


def url(kit: dict[str, Any], kind: str, suffix: str = "") -> str:
    return f"/api/v1/kits/{kit['id']}/documents/{kind}/signing{suffix}"


def name_signatory(client: FlaskClient, headers: dict[str, str], kit: dict[str, Any]) -> None:
    r = client.put(f"/api/v1/kits/{kit['id']}/signatory", json=SIGNATORY, headers=headers)
    assert r.status_code == 200, r.json
    assert r.json["name"] == SIGNATORY["name"]


def ask_code(
    app: Flask, client: FlaskClient, headers: dict[str, str], kit: dict[str, Any], kind: str
) -> str:
    r = client.post(url(kit, kind), headers=headers, environ_base=BROWSER)
    assert r.status_code == 202, r.json
    assert r.json["sent_to"] == SIGNATORY["email"]
    return last_code(app)


def confirm(
    client: FlaskClient,
    headers: dict[str, str],
    kit: dict[str, Any],
    kind: str,
    code: str,
    *,
    consent: Any = True,
    signature: dict[str, str] | None = None,
) -> Any:
    return client.post(
        url(kit, kind, "/confirm"),
        json={
            "code": code,
            "consent": consent,
            "signature": signature or {"drawn": drawing_png()},
        },
        headers=headers,
        environ_base=BROWSER,
    )


def flattened(data: bytes) -> bytes:
    """The annotations' appearances (the visible signature) drawn into the pages, by qpdf."""
    with tempfile.TemporaryDirectory() as folder:
        source, target = Path(folder) / "in.pdf", Path(folder) / "out.pdf"
        source.write_bytes(data)
        subprocess.run(
            ["qpdf", "--flatten-annotations=all", str(source), str(target)],
            check=True,
            timeout=60,
        )
        return target.read_bytes()


def pdfsig(data: bytes) -> str:
    with tempfile.NamedTemporaryFile(suffix=".pdf") as f:
        f.write(data)
        f.flush()
        report = subprocess.run(["pdfsig", f.name], capture_output=True, timeout=60)
    return report.stdout.decode()


@pytest.mark.postgres
def test_browser_signing_whole_flow_is_accepted_then_countersigned(
    app: Flask,
    client: FlaskClient,
    staff: dict[str, str],
    kit: dict[str, Any],
    employer_auth: dict[str, str],
    artifacts: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    assert_error(client.post(url(kit, PIECES[0]), headers=employer_auth), 409, "signatory_missing")
    name_signatory(client, employer_auth, kit)
    for kind, signature in zip(
        PIECES, ({"drawn": drawing_png()}, {"typed": "S. Guiraud-Chaumeil"}), strict=True
    ):
        code = ask_code(app, client, employer_auth, kit, kind)
        r = confirm(client, employer_auth, kit, kind, code, signature=signature)
        assert r.status_code == 201, r.json
        assert r.json["status"] == "accepted"
        assert r.json["pdfa_preserved"] is True
        [signer] = r.json["signatures"]
        assert signer["name"] == SIGNATORY["name"] and signer["trusted"] is True
        assert signer["organisation"] == "Albi"
        # the same code again: used
        assert_error(confirm(client, employer_auth, kit, kind, code), 409, "code_used")

        signed = client.get(
            f"/api/v1/kits/{kit['id']}/documents/{kind}/signed.pdf", headers=employer_auth
        ).data
        issued = issued_pdf(client, staff, kit, kind)
        assert signed.startswith(issued)  # the exact issued bytes, one revision appended
        (artifacts / f"browser-signed-{kind}.pdf").write_bytes(signed)
        out = pdfsig(signed)
        assert "Signature is Valid" in out, out
        assert f"Signer Certificate Common Name: {SIGNATORY['name']}" in out, out
        assert "Signed Ranges: [0 - " in out and "Total document signed" in out, out
        text = " ".join(" ".join(pdf_text(flattened(signed))).split())
        assert f"Signé électroniquement par {SIGNATORY['name']}, Maire" in text
        assert "(heure de Paris)" in text
        assert _appearance_has_image(signed)  # the drawing, or the typed name drawn large
        reader = PdfFileReader(io.BytesIO(signed))
        [sig] = reader.embedded_signatures
        assert sig.field_name == "SignatureCollectivite"
        ca_root = app.extensions["psc.signing"]["browser-ca"].root_der
        status = validate_pdf_signature(
            sig, ValidationContext(trust_roots=[asn1_x509.Certificate.load(ca_root)])
        )
        assert status.intact and status.valid and status.trusted
        assert status.coverage.name == "ENTIRE_FILE"  # its revision is the whole file
        cert = sig.signer_cert
        assert cert.subject.native["common_name"] == SIGNATORY["name"]
        assert cert.subject.native["organization_name"] == "Albi"
        assert set(cert.key_usage_value.native) == {"digital_signature", "non_repudiation"}

    kit_now = client.get(f"/api/v1/kits/{kit['id']}", headers=staff).json
    assert kit_now["status"] == "employer_signed"
    # not signable any more
    assert_error(client.post(url(kit, PIECES[0]), headers=employer_auth), 409, "not_signable")

    r = client.post(f"/api/v1/kits/{kit['id']}/countersign", headers=staff)
    assert r.status_code == 200, r.json
    for kind in PIECES:
        signed = client.get(
            f"/api/v1/kits/{kit['id']}/documents/{kind}/signed.pdf", headers=staff
        ).data
        out = pdfsig(signed)
        assert out.count("Signature is Valid") == 2, out
        sigs = PdfFileReader(io.BytesIO(signed)).embedded_signatures
        assert [s.field_name for s in sigs] == ["SignatureCollectivite", "SignatureAssureur"]
        for s in sigs:
            status = validate_pdf_signature(s, ValidationContext(trust_roots=[]))
            assert status.intact and status.valid

    events = client.get(f"/api/v1/kits/{kit['id']}/events", headers=staff).json["items"]
    names = [e["event"] for e in events]
    assert names.count("browser_signed") == 2 and names.count("signing_code_sent") == 2
    evidence = next(e for e in events if e["event"] == "browser_signed")
    assert evidence["address"] == "198.51.100.7"
    assert evidence["details"]["user_agent"] == "Mozilla/5.0 (Test; Mobile)"
    assert evidence["details"]["code_sent_at"] is not None
    assert evidence["details"]["consent"].startswith(
        "Je reconnais avoir pris connaissance du document « "
    )

    # the proof certificate shows the evidence, never the code
    proof = client.get(f"/api/v1/kits/{kit['id']}/proof.pdf", headers=staff)
    assert proof.status_code == 200, proof.data[:300]
    text = " ".join(pdf_text(proof.data))
    flat = " ".join(text.split())
    assert SIGNATORY["name"] in flat and SIGNATORY["email"] in flat
    assert "Je reconnais avoir pris connaissance du document" in flat
    assert "198.51.100.7" in flat and "Mozilla/5.0 (Test; Mobile)" in flat
    assert evidence["sha256_after"] in flat.replace(" ", "") or evidence["sha256_after"][
        :32
    ] in flat.replace(" ", "")
    codes = [
        re.search(r"^\s+(\d{6})\s*$", m.get_content(), re.M).group(1)  # type: ignore[union-attr]
        for m in outbox(app)
        if "code de signature" in m["Subject"]
    ]
    assert len(codes) == 2
    for code in codes:
        # a 6-digit run can occur inside a hash or a serial by chance: whole numbers only
        alone = re.compile(rf"(?<![0-9A-Fa-f]){code}(?![0-9A-Fa-f])")
        assert not alone.search(flat) and not alone.search(flat.replace(" ", ""))
        assert not alone.search(str([e["details"] for e in events]))
        assert not alone.search(caplog.text)  # in no log line either


def test_browser_signing_wrong_expired_and_blocked_codes(
    app: Flask, client: FlaskClient, kit: dict[str, Any], employer_auth: dict[str, str]
) -> None:
    name_signatory(client, employer_auth, kit)
    kind = PIECES[0]
    assert_error(confirm(client, employer_auth, kit, kind, "123456"), 422, "code_invalid")
    code = ask_code(app, client, employer_auth, kit, kind)
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    for _ in range(4):
        assert_error(confirm(client, employer_auth, kit, kind, wrong), 422, "code_invalid")
    assert_error(confirm(client, employer_auth, kit, kind, wrong), 429, "too_many_attempts")
    # dead: even the right code is refused now
    assert_error(confirm(client, employer_auth, kit, kind, code), 429, "too_many_attempts")

    code = ask_code(app, client, employer_auth, kit, kind)
    with app.app_context():
        db.session.execute(
            update(SigningRequest)
            .where(SigningRequest.status == "pending")
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
        db.session.commit()
    assert_error(confirm(client, employer_auth, kit, kind, code), 422, "code_expired")

    # a new code replaces the previous one
    first = ask_code(app, client, employer_auth, kit, kind)
    second = ask_code(app, client, employer_auth, kit, kind)
    if first != second:
        assert_error(confirm(client, employer_auth, kit, kind, first), 422, "code_invalid")
    r = confirm(client, employer_auth, kit, kind, second)
    assert r.status_code == 201, r.json
    with app.app_context():
        hashes = [r.code_hash for r in db.session.query(SigningRequest).all()]
        assert second not in hashes and all(len(h) == 64 for h in hashes)


def test_browser_signing_consent_and_signature_are_checked_before_the_code(
    app: Flask, client: FlaskClient, kit: dict[str, Any], employer_auth: dict[str, str]
) -> None:
    name_signatory(client, employer_auth, kit)
    kind = PIECES[1]
    code = ask_code(app, client, employer_auth, kit, kind)
    assert_error(
        confirm(client, employer_auth, kit, kind, code, consent=False), 422, "consent_required"
    )
    svg = "data:image/svg+xml;base64," + base64.b64encode(b"<svg/>").decode()
    fake = "data:image/png;base64," + base64.b64encode(b"<svg xmlns='x'/>").decode()
    truncated = drawing_png()[:200]
    blank = drawing_png()
    empty = Image.new("RGBA", (300, 100), (255, 255, 255, 0))
    buf = io.BytesIO()
    empty.save(buf, "PNG")
    blank = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
    tiny = io.BytesIO()
    Image.new("RGB", (5, 5), "black").save(tiny, "PNG")
    tiny_url = "data:image/png;base64," + base64.b64encode(tiny.getvalue()).decode()
    for drawn, expected in (
        (svg, "drawing_invalid"),
        (fake, "drawing_invalid"),
        (truncated, "drawing_invalid"),
        (tiny_url, "drawing_invalid"),
        (blank, "drawing_empty"),
    ):
        r = confirm(client, employer_auth, kit, kind, code, signature={"drawn": drawn})
        assert_error(r, 422, expected)
    assert_error(
        confirm(client, employer_auth, kit, kind, code, signature={"typed": " "}),
        422,
        "typed_invalid",
    )
    r = client.post(
        url(kit, kind, "/confirm"),
        json={"code": code, "consent": True, "signature": {}},
        headers=employer_auth,
    )
    assert_error(r, 422, "signature_required")
    # none of these used a try: the code still works
    r = confirm(client, employer_auth, kit, kind, code, signature={"typed": "S. Guiraud"})
    assert r.status_code == 201, r.json


def test_browser_signing_of_another_employers_kit_is_404(
    app: Flask,
    client: FlaskClient,
    staff: dict[str, str],
    convention: dict[str, Any],
    kit: dict[str, Any],
    employer_auth: dict[str, str],
) -> None:
    other = employer_payload(convention["id"], siret="21810001400016", name="Aguts")
    r = client.post("/api/v1/employers", json=other, headers=staff)
    assert r.status_code == 201, r.json
    record_prerequisites(client.application, "21810001400016")
    other_kit = client.post("/api/v1/employers/21810001400016/kits", headers=staff).json
    r = portal(client, other_kit["access_code"], siret="21810001400016")
    assert r.status_code == 200, r.json
    stranger = auth(r.json["token"])
    for call in (
        client.put(f"/api/v1/kits/{kit['id']}/signatory", json=SIGNATORY, headers=stranger),
        client.post(url(kit, PIECES[0]), headers=stranger),
        client.post(
            url(kit, PIECES[0], "/confirm"),
            json={"code": "000000", "consent": True, "signature": {"typed": "X Y"}},
            headers=stranger,
        ),
    ):
        assert_error(call, 404, "unknown_kit")
    # a piece without signature, or an unknown one
    name_signatory(client, employer_auth, kit)
    assert_error(
        client.post(url(kit, "information-notice"), headers=employer_auth), 409, "not_signable"
    )
    assert client.post(url(kit, "nope"), headers=employer_auth).status_code == 404
    assert SIRET


def test_browser_signing_codes_are_throttled_per_kit(
    app: Flask, client: FlaskClient, kit: dict[str, Any], employer_auth: dict[str, str]
) -> None:
    name_signatory(client, employer_auth, kit)
    answers = [
        client.post(url(kit, PIECES[0]), headers=employer_auth, environ_base=BROWSER).status_code
        for _ in range(6)
    ]
    assert answers[:5] == [202] * 5 and answers[5] == 429


def test_browser_signing_ca_from_a_configured_pkcs12_is_trusted(
    app: Flask, tmp_path: Path, database_url: str
) -> None:

    dev = load_ca(create_dev_ca(tmp_path / "made.p12"), None)
    protected = tmp_path / "ca.p12"
    protected.write_bytes(
        pkcs12.serialize_key_and_certificates(
            b"ca",
            dev.key,
            dev.cert,
            None,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    configured = make_app(
        database_url,
        tmp_path / "other",
        BROWSER_SIGNING_CA_PKCS12=str(protected),
        BROWSER_SIGNING_CA_PASSPHRASE="secret",
    )
    with configured.app_context():
        assert browser_signing_ca().fingerprint == dev.fingerprint
        assert dev.root_der in trust_settings().roots  # even with SIGNING_TRUST_ROOTS unset
    result = configured.test_cli_runner().invoke(
        args=["signing", "browser-ca", "--pem", str(tmp_path / "ca.pem")]
    )
    assert result.exit_code == 0, result.output
    assert dev.fingerprint in result.output
    assert (tmp_path / "ca.pem").read_bytes().startswith(b"-----BEGIN CERTIFICATE-----")
    with pytest.raises(KeyUnavailable):
        load_ca(protected, "wrong")
    leaf_only = tmp_path / "leaf.p12"
    key, cert = _leaf(dev)
    leaf_only.write_bytes(
        pkcs12.serialize_key_and_certificates(b"x", key, cert, None, serialization.NoEncryption())
    )
    with pytest.raises(KeyUnavailable):
        load_ca(leaf_only, None)  # not a CA certificate


def _leaf(ca: Any) -> Any:
    return issue_leaf(
        ca, Signatory(name="A B", title="Maire", email="a@b.fr", organisation="X", siret="1" * 14)
    )


def test_browser_signing_with_an_unreachable_tsa_keeps_the_code(
    app: Flask, client: FlaskClient, kit: dict[str, Any], employer_auth: dict[str, str]
) -> None:
    name_signatory(client, employer_auth, kit)
    kind = PIECES[0]
    code = ask_code(app, client, employer_auth, kit, kind)
    settings = app.extensions["psc.settings"]
    app.extensions["psc.settings"] = type(settings)(
        **{**settings.__dict__, "signing_tsa_url": "http://127.0.0.1:9/tsa"}
    )
    assert_error(confirm(client, employer_auth, kit, kind, code), 409, "timestamp_unavailable")
    with app.app_context():
        req = db.session.scalars(db.select(SigningRequest)).one()
        assert req.status == "pending" and req.attempts == 0  # nothing half-done
    app.extensions["psc.settings"] = settings
    r = confirm(client, employer_auth, kit, kind, code)
    assert r.status_code == 201, r.json


def _appearance_has_image(data: bytes) -> bool:
    """Whether the employer's signature widget's appearance draws an image."""
    reader = PdfFileReader(io.BytesIO(data))
    [sig] = [s for s in reader.embedded_signatures if s.field_name == "SignatureCollectivite"]
    appearance = sig.sig_field["/AP"]["/N"]

    def images(stream: Any, depth: int = 0) -> bool:
        resources = stream.get("/Resources") or {}
        xobjects = resources.get("/XObject") or {}
        for name in xobjects:
            obj = xobjects[name]
            if obj.get("/Subtype") == "/Image" or (depth < 4 and images(obj, depth + 1)):
                return True
        return False

    return images(appearance)


def test_browser_signing_consent_must_be_a_real_boolean(
    app: Flask, client: FlaskClient, kit: dict[str, Any], employer_auth: dict[str, str]
) -> None:
    name_signatory(client, employer_auth, kit)
    kind = PIECES[0]
    code = ask_code(app, client, employer_auth, kit, kind)
    for consent in ("yes", 1, "true"):
        r = confirm(client, employer_auth, kit, kind, code, consent=consent)
        assert r.status_code == 422, (consent, r.json)
    with app.app_context():
        assert db.session.scalars(db.select(SigningRequest)).one().status == "pending"


def test_browser_signing_failure_shows_no_python_text(
    app: Flask,
    client: FlaskClient,
    kit: dict[str, Any],
    employer_auth: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    name_signatory(client, employer_auth, kit)
    kind = PIECES[0]
    code = ask_code(app, client, employer_auth, kit, kind)

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("/srv/keys/ca.key: permission denied")

    monkeypatch.setattr(signing_browser, "_align_metadata", broken)
    with caplog.at_level(logging.ERROR):
        r = confirm(client, employer_auth, kit, kind, code)
    assert_error(r, 409, "signing_failed")
    message = r.json["error"]["message"]
    assert "RuntimeError" not in message and "/srv/keys" not in message
    assert "gestionnaire" in message
    assert "/srv/keys/ca.key" in caplog.text  # the detail stays in the server log
    with app.app_context():
        assert db.session.scalars(db.select(SigningRequest)).one().status == "pending"
