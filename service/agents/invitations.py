"""Sending the confirmation e-mail again to the employer's agents who have not used their link.

Built for volume (10 000 agents in a few seconds): the links they replace expire at once, and the
new links and e-mails are written by `notify.confirm_memberships` (bulk inserts, one broker
message per chunk of e-mails, sent by the workers).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import exists, select, update

from service.agents.models import ActivationLink, Membership
from service.agents.notify import CONFIRMED_COLUMNS, confirm_memberships
from service.errors import NotFound
from service.extensions import db
from service.reference.models import Employer
from service.timeutil import utcnow

#: rows per UPDATE … IN (…) (SQLite's and PostgreSQL's parameter limits are far above)
ID_CHUNK = 1000


@dataclass(frozen=True)
class Resent:
    """What a re-send did: e-mails queued, and the ids given that were not eligible."""

    queued: int
    skipped: list[int]


def _chunks(values: Sequence[int], size: int) -> Iterable[Sequence[int]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def resend_invitations(employer: Employer, *, ids: list[int] | None = None) -> Resent:
    """Queue the confirmation e-mail, with a new link, for each of the employer's `invited`
    memberships whose link was never used (or only those of `ids`). The caller commits.

    404 `unknown_membership` when an id is not one of the employer's memberships; the ids that
    are not eligible (active, left, link used) are returned as skipped.
    """
    eligible = (
        select(*CONFIRMED_COLUMNS)
        .where(
            Membership.employer_id == employer.id,
            Membership.state == "invited",
            ~exists().where(
                ActivationLink.membership_id == Membership.id, ActivationLink.used_at.is_not(None)
            ),
        )
        .order_by(Membership.id)
    )
    skipped: list[int] = []
    if ids is not None:
        wanted = sorted(set(ids))
        known: set[int] = set()
        for chunk in _chunks(wanted, ID_CHUNK):
            known.update(
                db.session.scalars(
                    select(Membership.id).where(
                        Membership.employer_id == employer.id, Membership.id.in_(chunk)
                    )
                )
            )
        missing = [i for i in wanted if i not in known]
        if missing:
            raise NotFound(
                f"Adhésion introuvable chez cet employeur : n° {missing[0]}.",
                code="unknown_membership",
            )
        rows = []
        for chunk in _chunks(wanted, ID_CHUNK):
            rows.extend(db.session.execute(eligible.where(Membership.id.in_(chunk))).all())
        found = {r.id for r in rows}
        skipped = [i for i in wanted if i not in found]
    else:
        rows = list(db.session.execute(eligible).all())
    if not rows:
        return Resent(0, skipped)

    now = utcnow()
    member_ids = [r.id for r in rows]
    # the links sent before stop working: only the newest one opens the account
    for chunk in _chunks(member_ids, ID_CHUNK):
        db.session.execute(
            update(ActivationLink)
            .where(
                ActivationLink.membership_id.in_(chunk),
                ActivationLink.used_at.is_(None),
                ActivationLink.expires_at > now,
            )
            .values(expires_at=now)
            .execution_options(synchronize_session=False)
        )
    confirm_memberships(employer, rows)
    return Resent(len(rows), skipped)
