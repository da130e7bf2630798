"""The portal's pages to sign in the browser: name the signatory, read the pages, get the
one-time code, consent, draw or type the signature, confirm (issue 13)."""

from __future__ import annotations

from typing import Any

from flask import Response, abort, flash, redirect, render_template, request, session, url_for
from pydantic import ValidationError

from service.api import field_errors
from service.backends import document_store
from service.errors import ServiceError, TooManyRequests
from service.esign import actions, domain
from service.esign.api import SignatoryIn
from service.extensions import db
from service.kits import domain as kits
from service.kits.models import Kit, KitDocument
from service.pages.auth import current_principal, page_roles
from service.pages.blueprint import bp
from service.returns.preview import stored_pdf_page
from signing.errors import Refused

PREVIEW_DPI = 80
SIGNATORY_LABELS = {"name": "Nom et prénom", "title": "Qualité", "email": "Courriel"}


def _kit() -> Kit:
    return kits.get_kit(int(session.get("kit_id", 0)), principal=current_principal())


def _preview_prefix(doc: KitDocument) -> str:
    return f"previews/issued/{doc.kit.reference}/{doc.kind}/{doc.sha256[:16]}"


@bp.route("/portail/signataire", methods=["GET", "POST"])
@page_roles("employer")
def portal_signatory() -> Any:
    """Who signs for the collectivité (name, title, e-mail where the codes go)."""
    kit = _kit()
    current = domain.get_signatory(kit)
    values: dict[str, str] = (
        {"name": current.name, "title": current.title, "email": current.email} if current else {}
    )
    errors: dict[str, str] = {}
    status = 200
    if request.method == "POST":
        values = {k: request.form.get(k, "").strip() for k in SIGNATORY_LABELS}
        try:
            data = SignatoryIn.model_validate(values)
            domain.name_signatory(
                kit,
                name=data.name,
                title=data.title,
                email=str(data.email),
                principal=current_principal(),  # type: ignore[arg-type]
                address=request.remote_addr,
            )
        except ValidationError as exc:
            for error in field_errors(exc):
                errors.setdefault(error.field or "name", error.message)
            status = 422
        except ServiceError as exc:
            db.session.rollback()
            errors[exc.field or "name"] = exc.message
            status = exc.status
        else:
            flash("Signataire enregistré : les codes de signature lui seront envoyés.")
            follow = request.args.get("suivant", "")
            if not follow.startswith("/portail/signer/"):  # never another site
                follow = url_for("pages.portal_kit")
            return redirect(follow)
    page = render_template(
        "portal_signatory.html",
        kit=kit,
        values=values,
        errors=errors,
        labels=SIGNATORY_LABELS,
        first_error=next(iter(errors), None),
    )
    return page, status


def _sign_page(kit: Kit, kind: str, *, error: str | None = None, status: int = 200) -> Any:
    doc = kits.get_document(kit, kind)
    try:
        domain.signable(kit, kind)
        problem = None
    except ServiceError as exc:
        problem = exc.message
    req = domain.latest_request(kit, kind)
    page = render_template(
        "portal_sign.html",
        kit=kit,
        doc=doc,
        problem=problem,
        signatory=domain.get_signatory(kit),
        consent=domain.consent_text(doc),
        pending=req if req is not None and req.status == "pending" else None,
        error=error,
        typed=request.form.get("typed", "") if request.method == "POST" else "",
        mode=request.form.get("mode", "drawn") if request.method == "POST" else "drawn",
        max_attempts=domain.MAX_ATTEMPTS,
        minutes=domain.CODE_MINUTES,
    )
    return page, status


@bp.get("/portail/signer/<kind>")
@page_roles("employer")
def portal_sign(kind: str) -> Any:
    return _sign_page(_kit(), kind)


@bp.get("/portail/signer/<kind>/page-<int:number>.png")
@page_roles("employer")
def portal_sign_page(kind: str, number: int) -> Response:
    """A page of the issued piece as an image (made once from our own PDF, then kept)."""
    kit = _kit()
    doc = kits.get_document(kit, kind)
    if not 1 <= number <= doc.pages:
        abort(404)
    data = stored_pdf_page(
        store=document_store(),
        pdf_key=doc.pdf_key,
        prefix=_preview_prefix(doc),
        number=number,
        max_pages=doc.pages,
        dpi=PREVIEW_DPI,
    )
    return Response(data, mimetype="image/png", headers={"Cache-Control": "private, max-age=3600"})


@bp.post("/portail/signer/<kind>/code")
@page_roles("employer")
def portal_sign_code(kind: str) -> Any:
    kit = _kit()
    try:
        req = actions.send_code(
            kit,
            kind,
            principal=current_principal(),
            address=request.remote_addr,  # type: ignore[arg-type]
        )
    except TooManyRequests as exc:
        db.session.rollback()
        page, _ = _sign_page(kit, kind, error=exc.message)
        return page, 429, {"Retry-After": str(exc.retry_after or 60)}
    except ServiceError as exc:
        db.session.rollback()
        return _sign_page(kit, kind, error=exc.message, status=exc.status)
    flash(f"Code envoyé à {req.signatory_email} : il est valable {domain.CODE_MINUTES} minutes.")
    return redirect(url_for("pages.portal_sign", kind=kind) + "#signer")


@bp.post("/portail/signer/<kind>")
@page_roles("employer")
def portal_sign_confirm(kind: str) -> Any:
    kit = _kit()
    mode = request.form.get("mode", "drawn")
    signature = (
        domain.SignatureGiven(typed=request.form.get("typed", ""))
        if mode == "typed"
        else domain.SignatureGiven(drawn=request.form.get("drawn", ""))
    )
    try:
        ret = actions.sign(
            kit,
            kind,
            code=request.form.get("code", ""),
            consent=request.form.get("consent") == "oui",
            signature=signature,
            principal=current_principal(),  # type: ignore[arg-type]
            address=request.remote_addr,
            user_agent=request.headers.get("User-Agent"),
        )
    except Refused as refusal:
        return _sign_page(kit, kind, error=f"Pièce refusée : {refusal.message}", status=422)
    except ServiceError as exc:
        db.session.rollback()
        return _sign_page(kit, kind, error=exc.message, status=exc.status)
    if ret.status == "accepted":
        flash(f"« {kits.get_document(kit, kind).title} » signée en ligne et acceptée : merci.")
    else:
        flash("Pièce signée reçue : elle sera vérifiée par nos équipes.")
    return redirect(url_for("pages.portal_kit"))
