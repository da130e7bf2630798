"""The CDG's space: tracking of its employers, progress over time, archived copies."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from flask import Response, redirect, render_template, request
from sqlalchemy import select

from service import labels
from service.agents.payroll import month_label, parse_month
from service.agents.summary import agents_summary
from service.archive import domain as archive
from service.archive.downloads import archived_copy, record_archive_download
from service.archive.models import ArchiveRecord
from service.downloads import csv_attachment
from service.errors import InvalidInput
from service.extensions import db
from service.kits.domain import employers_with_current_kit
from service.kits.models import Kit
from service.pages.auth import current_principal, page_roles
from service.pages.blueprint import bp
from service.reference.domain import get_cdg
from service.reference.models import Cdg, Employer

SERIES = (
    ("issued_at", "Émis", "s-issued"),
    ("employer_signed_at", "Signés", "s-signed"),
    ("countersigned_at", "Contresignés", "s-countersigned"),
    ("archived_at", "Archivés", "s-archived"),
)


def _cdg_code() -> str:
    who = current_principal()
    if who is not None and who.role == "cdg":
        return who.cdg_code or ""
    return request.args.get("cdg", "81")


@dataclass(frozen=True)
class Chart:
    weeks: list[date]
    series: list[tuple[str, str, list[int]]]
    top: int


def _monday(value: datetime) -> date:
    day = value.date()
    return day - timedelta(days=day.weekday())


def progress_chart(cdg_code: str, weeks: int = 12) -> Chart:
    """Kits issued, signed, countersigned and archived per week (the last `weeks` weeks)."""
    kits = db.session.scalars(
        select(Kit)
        .join(Employer, Kit.employer_id == Employer.id)
        .join(Cdg)
        .where(Cdg.code == cdg_code)
    ).all()
    this_week = _monday(datetime.now())
    axis = [this_week - timedelta(weeks=n) for n in reversed(range(weeks))]
    series = []
    for attribute, label, css in SERIES:
        counts = Counter(_monday(getattr(k, attribute)) for k in kits if getattr(k, attribute))
        series.append((label, css, [counts.get(w, 0) for w in axis]))
    top = max([1, *(v for _, _, values in series for v in values)])
    return Chart(axis, series, top)


@bp.get("/cdg")
@page_roles("cdg", "admin", "staff")
def cdg_home() -> Any:
    code = _cdg_code()
    cdg = db.session.scalar(select(Cdg).where(Cdg.code == code))
    if cdg is None:
        return redirect("/")
    q = (request.args.get("q") or "").strip().lower()
    rows = employers_with_current_kit(code)
    if q:
        rows = [r for r in rows if q in r[0].name.lower() or q in r[0].siret]
    records = db.session.scalars(
        select(ArchiveRecord)
        .where(ArchiveRecord.cdg_code == code)
        .order_by(ArchiveRecord.id.desc())
        .limit(200)
    ).all()
    return render_template(
        "cdg.html", cdg=cdg, rows=rows, q=q, records=records, chart=progress_chart(code)
    )


@bp.get("/cdg/suivi.csv")
@page_roles("cdg", "admin", "staff")
def cdg_tracking() -> Response:
    code = _cdg_code()
    return csv_attachment(archive.tracking_csv(code), f"suivi-cdg-{code}.csv")


@bp.get("/cdg/archives/<int:record_id>")
@page_roles("cdg", "admin", "staff")
def cdg_archive(record_id: int) -> Response:
    rec = archive.get_record(record_id, principal=current_principal())
    record_archive_download(rec, actor=current_principal().actor)
    return archived_copy(rec)


# -- hG: the agents' memberships (« Adhésions des agents ») ----------------------------------------


@dataclass(frozen=True)
class AgentsChart:
    months: list[str]
    values: list[int]
    top: int


def _agents_chart(summary: dict[str, Any]) -> AgentsChart:
    """Memberships due each month, every employer of the CDG together (the last 24 months)."""
    totals: Counter[str] = Counter()
    for item in summary["employers"]:
        for point in item["progress"]:
            totals[point["month"]] += point["memberships"]
    months = sorted(totals)[-24:]
    values = [totals[m] for m in months]
    return AgentsChart(months, values, max([1, *values]))


@bp.get("/cdg/adhesions")
@page_roles("cdg", "admin", "staff")
def cdg_agents() -> Any:
    code = _cdg_code()
    cdg = get_cdg(code, principal=current_principal())
    error = None
    month = None
    raw = request.args.get("mois")
    if raw:
        try:
            month = parse_month(raw)
        except InvalidInput as exc:
            error = exc.message
    summary = agents_summary(cdg, month=month)
    return render_template(
        "cdg_agents.html",
        cdg=cdg,
        summary=summary,
        month=date.fromisoformat(summary["month"] + "-01"),
        month_label=month_label(date.fromisoformat(summary["month"] + "-01")),
        chart=_agents_chart(summary),
        states=labels.MEMBERSHIP_STATE_COUNTS,
        error=error,
        staff=current_principal().role in ("admin", "staff"),
    )
