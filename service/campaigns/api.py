"""API views for campaigns: start one for a CDG, follow it, retry its failures."""

from __future__ import annotations

from typing import Any

from flask import jsonify, request

from service.api import principal, route
from service.campaigns import domain
from service.campaigns.models import Campaign
from service.extensions import db
from service.timeutil import iso

STAFF = ("admin", "staff")


def campaign_json(campaign: Campaign) -> dict[str, Any]:
    """The campaign with its progress read from its jobs (settled first: a campaign whose last
    job failed is finished here)."""
    counts = domain.settle(campaign)
    return {
        "id": campaign.id,
        "cdg": campaign.cdg_code,
        "status": counts.status,
        "total": counts.total,
        "done": counts.done,
        "failed": counts.failed,
        "pending": counts.pending,
        "started_by": campaign.started_by,
        "started_at": iso(campaign.started_at),
        "finished_at": None if counts.pending else iso(campaign.finished_at),
        "failures": [
            {"siret": f.siret, "name": f.name, "error": f.error} for f in domain.failures(campaign)
        ],
        # hE: left aside, waiting for their prerequisites (not failures)
        "waiting_for_prerequisites": [
            {"siret": e.siret, "name": e.name}
            for e in domain.waiting_for_prerequisites(campaign.cdg_code)
        ],
    }


@route(
    "/cdgs/<code>/campaigns",
    ("POST",),
    summary="Émettre un kit à chaque employeur du CDG qui n'en a pas (en arrière-plan)",
    roles=STAFF,
    responses={
        202: "Campagne lancée : `id`, `total`",
        404: "CDG inconnu",
        409: "Une campagne du CDG est en cours, ou aucun employeur sans kit",
    },
)
def start_campaign(code: str) -> Any:
    campaign = domain.start_campaign(code, actor=principal().actor)
    return jsonify({"id": campaign.id, "total": campaign.total}), 202


@route("/campaigns", summary="Lister les campagnes", roles=STAFF, query={"cdg": "code du CDG"})
def list_campaigns() -> Any:
    items = [campaign_json(c) for c in domain.list_campaigns(request.args.get("cdg") or None)]
    db.session.commit()  # campaigns found finished on the way
    return jsonify({"items": items})


@route(
    "/campaigns/<int:campaign_id>",
    summary="Avancement d'une campagne (lu en base) et ses échecs",
    roles=STAFF,
    responses={200: "OK", 404: "Campagne introuvable"},
)
def get_campaign(campaign_id: int) -> Any:
    data = campaign_json(domain.get_campaign(campaign_id))
    db.session.commit()
    return jsonify(data)


@route(
    "/campaigns/<int:campaign_id>/retry",
    ("POST",),
    summary="Relancer les kits en échec d'une campagne",
    roles=STAFF,
    responses={
        202: "Échecs relancés",
        404: "Campagne introuvable",
        409: "Une autre campagne du CDG est en cours",
    },
)
def retry_campaign(campaign_id: int) -> Any:
    campaign = domain.get_campaign(campaign_id)
    retried = domain.retry_failed(campaign)
    db.session.commit()
    return jsonify({**campaign_json(campaign), "retried": retried}), 202
