"""Employer listings with their current kit status (search, filters, pagination)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, or_, select

from service.errors import InvalidInput
from service.extensions import db
from service.kits.lifecycle import CURRENT_STATES, SUPERSEDED
from service.kits.models import Kit
from service.reference.models import Cdg, Employer


def list_employers(
    *,
    cdg: str | None,
    status: str | None,
    q: str | None,
    limit: int,
    offset: int,
    kind: str | None = None,
) -> tuple[int, Sequence[Employer]]:
    query = select(Employer).join(Cdg, Employer.cdg_id == Cdg.id)
    if cdg:
        query = query.where(Cdg.code == cdg)
    if kind:
        query = query.where(Employer.kind == kind)
    if q:
        pattern = f"%{q.strip().lower()}%"
        query = query.where(
            or_(func.lower(Employer.name).like(pattern), Employer.siret.like(pattern))
        )
    if status:
        open_kits = select(Kit.employer_id).where(Kit.status != SUPERSEDED)
        if status == "none":
            query = query.where(Employer.id.not_in(open_kits))
        elif status in CURRENT_STATES:
            query = query.where(Employer.id.in_(open_kits.where(Kit.status == status)))
        else:
            raise InvalidInput("État de kit inconnu.", code="invalid_status", field="status")
    total = db.session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = db.session.scalars(
        query.order_by(Employer.name, Employer.id).limit(limit).offset(offset)
    )
    return total, rows.all()
