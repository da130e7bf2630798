"""« File des travaux »: the background work as staff see it (workers, campaigns, pending and
failed tasks) and the retry of failed tasks, one or all; the bulk files from the pages (a
campaign's letters, a CDG's archive in one ZIP)."""

from __future__ import annotations

from typing import Any

from flask import flash, redirect, render_template, request, url_for

from service import labels
from service.archive.bundle_api import archive_zip_response
from service.campaigns.letters_api import letters_response
from service.errors import ServiceError
from service.extensions import db
from service.jobs import domain
from service.pages.auth import current_principal, page_roles
from service.pages.blueprint import bp
from service.pages.staff import CONFIRM, STAFF, form_number
from service.wording import after_colon, agree, counted


def _cursor(name: str) -> int | None:
    raw = request.args.get(name) or ""
    return form_number(raw) if raw else None


@bp.get("/travaux")
@page_roles(*STAFF)
def queue_page() -> Any:
    failed = domain.failed_jobs(before=_cursor("echecs_avant"))
    return render_template(
        "queue.html",
        workers=domain.workers(),
        campaigns=domain.campaigns(before=_cursor("campagnes_avant")),
        pending=domain.pending_by_kind(),
        failed_kinds=domain.failed_by_kind(),
        failed=failed,
        counts=domain.job_counts(),
        first_page=not request.args.get("echecs_avant"),
        job_kind=labels.job_kind,
        campaign_state=labels.campaign_state,
    )


@bp.post("/travaux/<int:job_id>/relance")
@page_roles(*STAFF)
def queue_retry(job_id: int) -> Any:
    try:
        item = domain.describe(domain.retry_job(job_id))
        db.session.commit()
    except ServiceError as exc:
        db.session.rollback()
        flash(exc.message, "error")
    else:
        # the subject keeps its names as written (« Cagnac-les-Mines »)
        flash(f"Tâche relancée : {after_colon(item.kind)}, {item.about}.")
    return redirect(url_for("pages.queue_page"))


@bp.post("/travaux/relance")
@page_roles(*STAFF)
def queue_retry_all() -> Any:
    task = request.form.get("tache") or None
    if request.form.get(CONFIRM) != "oui":
        flash(
            "Cochez la case de confirmation : les tâches en échec choisies seront relancées.",
            "error",
        )
        return redirect(url_for("pages.queue_page") + "#echecs")
    try:
        count = domain.retry_all_failed(task=task)
        db.session.commit()
    except ServiceError as exc:
        db.session.rollback()
        flash(exc.message, "error")
        return redirect(url_for("pages.queue_page"))
    if count:
        which = f" ({after_colon(labels.job_kind(task))})" if task else ""
        flash(f"{counted(count, 'tâche')} {agree(count, 'relancée')}{which}.")
    else:
        flash("Aucune tâche en échec à relancer.")
    return redirect(url_for("pages.queue_page"))


@bp.get("/travaux/campagnes/<int:campaign_id>/courriers.pdf")
@page_roles(*STAFF)
def campaign_letters(campaign_id: int) -> Any:
    who = current_principal()
    assert who is not None
    return letters_response(campaign_id, actor=who.actor)


@bp.get("/cdg/<code>/archive.zip")
@page_roles(*STAFF, "cdg")
def cdg_archive_zip(code: str) -> Any:
    """The CDG's archive in one ZIP from the pages (a CDG's session sees its own only)."""
    return archive_zip_response(code, who=current_principal())
