"""The kit's proof certificate from the pages: staff and CDG (employer page, CDG space), and the
employer in its portal. Same file as `GET /api/v1/kits/{id}/proof.pdf`; the employer's copy
names no staff member and no stranger's address."""

from __future__ import annotations

import hashlib

from flask import Response, session

from service.downloads import record_kit_download
from service.kits import domain as kits
from service.kits.api import proof_response
from service.kits.models import Kit
from service.pages.auth import current_principal, page_roles
from service.pages.blueprint import bp


def _send(kit: Kit) -> Response:
    who = current_principal()
    response = proof_response(kit, role=who.role if who else None)
    record_kit_download(
        kit,
        file="proof.pdf",
        actor=who.actor if who else "system",
        sha256=hashlib.sha256(response.get_data()).hexdigest(),
    )
    return response


@bp.get("/kits/<int:kit_id>/certificat-de-preuve.pdf")
@page_roles("admin", "staff", "cdg")
def kit_proof(kit_id: int) -> Response:
    return _send(kits.get_kit(kit_id, principal=current_principal()))


@bp.get("/portail/certificat-de-preuve.pdf")
@page_roles("employer")
def portal_proof() -> Response:
    return _send(kits.get_kit(int(session.get("kit_id", 0)), principal=current_principal()))
