"""The employers' portal: sign in with SIRET and access code, download, upload signed pieces."""

from __future__ import annotations

from datetime import date
from typing import Any

from flask import Response, flash, redirect, render_template, request, session, url_for
from sqlalchemy import select

from service import labels
from service.agents import payroll
from service.backends import document_store, settings
from service.downloads import (
    bytes_attachment,
    csv_attachment,
    record_kit_download,
    stream_object,
)
from service.errors import ServiceError, TooManyRequests, Unavailable
from service.extensions import db
from service.kits import domain as kits
from service.kits.models import Kit
from service.pages.auth import current_principal, page_roles, sign_in_employer, sign_out
from service.pages.blueprint import bp
from service.reference.domain import get_employer
from service.reference.models import Employer
from service.returns import domain as returns
from service.returns.actions import receive_upload
from service.returns.models import KitReturn
from signing.errors import Refused

DOCX_TYPE = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"


@bp.route("/portail", methods=["GET", "POST"])
def portal_login() -> Any:
    error = None
    values = {"siret": request.form.get("siret", "")}
    if request.method == "POST":
        try:
            opened = returns.open_portal_session(
                siret=request.form.get("siret", ""),
                access_code=request.form.get("access_code", ""),
                address=request.remote_addr,
                api_token=False,
            )
        except TooManyRequests as exc:
            page = render_template("portal_login.html", error=exc.message, values=values)
            return page, 429, {"Retry-After": str(exc.retry_after or 60)}
        except Unavailable:
            raise
        except ServiceError as exc:
            error = exc.message
        else:
            sign_in_employer(opened.siret, opened.kit_id)
            return redirect(url_for("pages.portal_kit"))
    return render_template("portal_login.html", error=error, values=values)


@bp.post("/portail/deconnexion")
def portal_logout() -> Any:
    sign_out()
    flash("Vous êtes déconnecté.")
    return redirect(url_for("pages.portal_login"))


def _portal_kit() -> Kit:
    return kits.get_kit(int(session.get("kit_id", 0)), principal=current_principal())


@bp.get("/portail/kit")
@page_roles("employer")
def portal_kit() -> Any:
    kit = _portal_kit()
    history = db.session.scalars(
        select(KitReturn).where(KitReturn.kit_id == kit.id).order_by(KitReturn.id.desc())
    ).all()
    latest = {}
    for ret in history:
        if ret.kind not in latest or ret.status == "accepted":
            latest.setdefault(ret.kind, ret)
            if ret.status == "accepted":
                latest[ret.kind] = ret
    return render_template(
        "portal_kit.html", kit=kit, latest=latest, history=history, max_mb=settings().max_upload_mb
    )


def _downloaded(kit: Kit, file: str, sha256: str | None) -> None:
    record_kit_download(kit, file=file, actor=current_principal().actor, sha256=sha256)


@bp.get("/portail/documents/<kind>.pdf")
@page_roles("employer")
def portal_document(kind: str) -> Response:
    kit = _portal_kit()
    if kind == "kit-complet":
        _downloaded(kit, "bundle.pdf", kit.bundle_sha256)
        return stream_object(kit.bundle_key, "application/pdf", f"{kit.reference}.pdf")
    doc = kits.get_document(kit, kind)
    _downloaded(kit, f"{kind}.pdf", doc.sha256)
    return stream_object(
        doc.pdf_key, "application/pdf", labels.download_name(kit.reference, kind), doc.size
    )


@bp.get("/portail/documents/<kind>.docx")
@page_roles("employer")
def portal_docx(kind: str) -> Response:
    kit = _portal_kit()
    doc = kits.get_document(kit, kind)
    key = kits.require_docx(doc)
    _downloaded(kit, f"{kind}.docx", doc.docx_sha256)
    return stream_object(key, DOCX_TYPE, labels.download_name(kit.reference, kind, ext="docx"))


@bp.get("/portail/kit.zip")
@page_roles("employer")
def portal_zip() -> Response:
    kit = _portal_kit()
    archive, sha256 = kits.zip_of(kit, store=document_store())  # made (and checked) first
    _downloaded(kit, "kit.zip", sha256)
    return bytes_attachment(archive, "application/zip", f"{kit.reference}.zip")


@bp.get("/portail/signes/<kind>.pdf")
@page_roles("employer")
def portal_signed(kind: str) -> Response:
    kit = _portal_kit()
    ret = returns.accepted_return(kit, kind)
    _downloaded(kit, f"{kind}/signed.pdf", ret.countersigned_sha256 or ret.sha256)
    return stream_object(
        ret.countersigned_key or ret.storage_key,
        "application/pdf",
        labels.download_name(
            kit.reference, kind, copy="countersigned" if ret.countersigned_key else "signed"
        ),
    )


@bp.post("/portail/retours/<kind>")
@page_roles("employer")
def portal_upload(kind: str) -> Any:
    kit = _portal_kit()
    upload = request.files.get("file")
    if upload is None or not upload.filename:
        flash("Choisissez le fichier signé à déposer.", "error")
        return redirect(url_for("pages.portal_kit"))
    try:
        ret = receive_upload(
            kit, kind, upload.stream, principal=current_principal(), address=request.remote_addr
        )
    except Refused as refusal:
        flash(f"Pièce refusée : {refusal.message}", "error")
    except ServiceError as exc:
        db.session.rollback()
        flash(f"Pièce refusée : {exc.message}", "error")
    else:
        if ret.status == "accepted":
            flash("Pièce signée acceptée : merci.")
        else:
            flash("Pièce reçue : elle sera vérifiée par nos équipes.")
    return redirect(url_for("pages.portal_kit"))


# -- hG: the payroll files in the portal ---------------------------------------------------------


@bp.get("/portail/paie/parametrage.pdf")
@page_roles("employer")
def portal_payroll_settings() -> Response:
    employer = get_employer(current_principal().siret or "", principal=current_principal())
    pdf = payroll.render_settings_pdf(employer, payroll.payroll_settings(employer))
    _payroll_downloaded(employer, payroll.SETTINGS_FILE, pdf)
    response = Response(pdf, mimetype="application/pdf")
    response.headers["Content-Disposition"] = (
        f'attachment; filename="parametrage-paie-{employer.siret}.pdf"'
    )
    return response


@bp.get("/portail/paie/cotisations.csv")
@page_roles("employer")
def portal_payroll_csv() -> Any:
    employer = get_employer(current_principal().siret or "", principal=current_principal())
    try:
        month = payroll.parse_month(request.args.get("mois"))
    except ServiceError as exc:
        flash(exc.message, "error")
        return redirect(url_for("pages.portal_kit") + "#paie")
    body = payroll.payroll_csv(payroll.payroll_month(employer, month))
    _payroll_downloaded(employer, payroll.PAYROLL_FILE, body.encode("utf-8"), month=month)
    return csv_attachment(body, f"cotisations-{employer.siret}-{month:%Y-%m}.csv")


def _payroll_downloaded(
    employer: Employer, file: str, data: bytes, *, month: date | None = None
) -> None:
    payroll.record_payroll_download(
        employer,
        file=file,
        data=data,
        actor=current_principal().actor,
        address=request.remote_addr,
        month=month,
    )
    db.session.commit()
