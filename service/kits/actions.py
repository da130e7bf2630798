"""Issuing as the API, the pages and the commands all do it: with the configured store and
portal address, committed, and the employer told by e-mail (never the code)."""

from __future__ import annotations

from datetime import date

from service.accounts.auth import Principal
from service.backends import document_store, settings
from service.extensions import db
from service.kits import notify
from service.kits.domain import IssuedKit, cancel_kit, issue_kit
from service.kits.models import Kit
from service.reference.models import Employer
from service.subscriptions.domain import record_override, require_prerequisites


def _options(actor: str) -> dict[str, object]:
    s = settings()
    return {
        "store": document_store(),
        "actor": actor,
        "code_days": s.access_code_days,
        "portal_url": f"{s.public_url}/portail",
    }


def issue_one(
    employer: Employer,
    *,
    actor: str,
    cover_starts_on: date | None = None,
    override_reason: str | None = None,
    prerequisites_override_reason: str | None = None,
) -> IssuedKit:
    """409 `prerequisites_missing` while a prerequisite is missing, unless staff give a reason
    (then audited with the missing list, and printed in the proof): API.md's `override_reason`
    (which also justifies a start of cover in the past), or `prerequisites_override_reason`,
    which excuses the papers only."""
    prerequisites_reason = prerequisites_override_reason or override_reason
    missing = require_prerequisites(employer, override_reason=prerequisites_reason)
    issued = issue_kit(
        employer,
        cover_starts_on=cover_starts_on,
        override_reason=override_reason,
        **_options(actor),  # type: ignore[arg-type]
    )
    if missing:
        record_override(
            kit_id=issued.kit.id,
            siret=employer.siret,
            reference_text=issued.kit.reference,
            missing=missing,
            reason=prerequisites_reason or "",
            actor=actor,
        )
    notify.kit_issued(issued.kit)
    db.session.commit()
    return issued


def cancel_one(kit_id: int, *, reason: str, principal: Principal) -> Kit:
    """Cancel an open kit and tell the employer by e-mail (queued in the same transaction)."""
    kit = cancel_kit(kit_id, reason=reason, principal=principal)
    notify.kit_cancelled(kit)
    db.session.commit()
    return kit
