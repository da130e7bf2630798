"""Registering agents' memberships (the BAI): one at a time, previewed, or many at once; the
employer's list, departures and export. Views stay thin over these functions."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from pydantic import ValidationError
from sqlalchemy import func, insert, or_, select, text, update
from sqlalchemy.exc import IntegrityError

from service import labels
from service.accounts.auth import Principal
from service.agents import rules
from service.agents.models import (
    BASE_COMPONENTS,
    MEMBERSHIP_STATES,
    ActivationLink,
    Membership,
)
from service.agents.notify import confirm_memberships, membership_confirmed
from service.agents.schemas import LeaveIn, MembershipIn
from service.api import field_errors
from service.audit.domain import record
from service.errors import Conflict, InvalidInput, NotFound, ServiceError
from service.extensions import db
from service.formatting import capitalize_first, long_date, money
from service.kits.domain import current_kit, local_today
from service.kits.lifecycle import pieces_signed
from service.kits.models import Kit, KitCounter
from service.reference.domain import can_see_employer, convention_options
from service.reference.models import Employer
from service.reference.rules import cents, check_half, parse_amount, parse_contribution
from service.reference.simulation import Option, normalize_amount, simulate
from service.timeutil import utcnow

INVITED, ACTIVE, LEFT = MEMBERSHIP_STATES
#: the counter's key for memberships' references (kits use the real year; memberships year 0)
_REFERENCE_YEAR = 0

INDIVIDUAL_CONTRACT_WARNING = (
    "L'agent déclare un contrat de prévoyance individuel : il doit le résilier (lettre "
    "recommandée, au moins deux mois avant son échéance) ; l'employeur ne peut plus y participer."
)


@dataclass(frozen=True)
class Quote:
    """What the agent pays each month, as the confirmation step shows it."""

    base: Decimal
    rate: Decimal
    premium: Decimal
    minimum_premium: Decimal
    employer_contribution: Decimal
    employee_share: Decimal
    options: tuple[Option, ...]
    notes: tuple[str, ...]


@dataclass(frozen=True)
class RowError:
    """One error of an imported file: its line (the header is line 1), column, code, message."""

    row: int
    field: str | None
    code: str
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {"row": self.row, "field": self.field, "code": self.code, "message": self.message}


class ImportRejected(InvalidInput):
    """Nothing of the file was recorded: every row's errors are listed."""

    code = "import_rejected"

    def __init__(self, errors: Sequence[RowError]) -> None:
        count = len(errors)
        rows = len({e.row for e in errors})
        super().__init__(
            f"Import refusé, rien n'a été enregistré : {count} erreur"
            f"{'s' if count > 1 else ''} sur {rows} ligne{'s' if rows > 1 else ''}.",
        )
        self.errors = list(errors)

    def to_dict(self) -> dict[str, Any]:
        body = super().to_dict()
        body["error"]["errors"] = [e.to_dict() for e in self.errors]
        return body


# -- who may register, and the kit they join under -----------------------------------------------


def require_registrar(principal: Principal, employer: Employer) -> None:
    """The employer itself or the insurer's staff (a CDG only sees aggregates)."""
    if principal.role not in ("admin", "staff", "employer") or not can_see_employer(
        principal, employer
    ):
        raise NotFound("Employeur introuvable.", code="unknown_employer")


def joined_kit(employer: Employer) -> Kit:
    """The employer's current kit, every piece signed: else its agents cannot join yet."""
    kit = current_kit(employer)
    if not pieces_signed(kit):
        raise Conflict(
            "Les agents adhèrent une fois toutes les pièces du kit signées par la collectivité.",
            code="employer_not_joined",
        )
    return kit  # type: ignore[return-value]


# -- the computation ---------------------------------------------------------------------------


def _contribution_for(employer: Employer, category: str) -> Decimal:
    scheme = parse_contribution(employer.contribution, regime=employer.convention.regime)
    if scheme.mode == "flat":
        return scheme.amount  # type: ignore[return-value]
    if category not in scheme.amounts:
        raise InvalidInput(
            f"La délibération de l'employeur ne prévoit pas de participation pour la catégorie "
            f"{category}.",
            code="no_contribution_for_category",
            field="category",
        )
    return scheme.amounts[category]


def _elements(data: MembershipIn) -> dict[str, str]:
    return {k: str(v) for k, v in data.base.model_dump().items() if v is not None}


def evaluate(
    *, employer: Employer, kit: Kit, data: MembershipIn
) -> tuple[Quote | None, list[InvalidInput]]:
    """Every rule on one membership (but the duplicates): its quote, or the refusals found."""
    convention = employer.convention
    errors: list[InvalidInput] = []
    checks = (
        lambda: rules.check_joins_on(
            data.joins_on,
            convention_start=convention.starts_on,
            convention_end=convention.ends_on,
            cover_start=kit.cover_starts_on or employer.joins_on,
        ),
        lambda: rules.check_birth_date(data.birth_date, joins_on=data.joins_on),
        lambda: rules.check_situation(
            in_normal_service=data.in_normal_service,
            paid_by_hour_or_day=data.paid_by_hour_or_day,
            on_sick_leave=data.on_sick_leave,
            returned_on=data.returned_on,
            previous_collective_contract=data.previous_collective_contract,
            joins_on=data.joins_on,
            mandatory=convention.regime == "mandatory",
        ),
    )
    for check in checks:
        try:
            check()
        except InvalidInput as exc:
            errors.append(exc)
    try:
        quote = _quote(employer=employer, data=data)
    except InvalidInput as exc:
        errors.append(exc)
        quote = None
    return (quote if not errors else None), errors


def _quote(*, employer: Employer, data: MembershipIn) -> Quote:
    convention = employer.convention
    base_rate = Decimal(convention.base_rate)
    contribution = _contribution_for(employer, data.category)
    sim = simulate(
        base_rate=base_rate,
        available_options=convention_options(convention),
        elements=_elements(data),
        contribution=str(contribution),
        option_codes=data.options,
        regime=convention.regime,
    )
    if sim.base <= 0:
        raise InvalidInput(
            "La rémunération servant d'assiette (TBI, NBI, régime indemnitaire, CTI) est nulle.",
            code="missing_base",
            field="base.tbi",
        )
    minimum_premium = cents(sim.base * base_rate / Decimal(100))
    check_half(
        regime=convention.regime, premium=minimum_premium, contribution=contribution, field="base"
    )
    notes = list(sim.notes)
    if data.has_individual_contract:
        notes.append(INDIVIDUAL_CONTRACT_WARNING)
    return Quote(
        base=sim.base,
        rate=sim.rate,
        premium=sim.premium,
        minimum_premium=minimum_premium,
        employer_contribution=sim.contribution_paid,
        employee_share=sim.employee_share,
        options=sim.options,
        notes=tuple(notes),
    )


# -- one membership ----------------------------------------------------------------------------


def _open_keys(employer: Employer, keys: Iterable[str]) -> set[str]:
    wanted = list(set(keys))
    found: set[str] = set()
    for start in range(0, len(wanted), 500):
        found.update(
            db.session.scalars(
                select(Membership.person_key).where(
                    Membership.employer_id == employer.id,
                    Membership.state != LEFT,
                    Membership.person_key.in_(wanted[start : start + 500]),
                )
            )
        )
    return found


def _duplicate(data: MembershipIn) -> InvalidInput:
    return Conflict(
        f"Une adhésion est déjà en cours chez cet employeur pour {data.first_name} "
        f"{data.last_name}, date de naissance : {long_date(data.birth_date)}.",
        code="duplicate_agent",
        field="last_name",
    )


def check_membership(
    *, employer: Employer, data: MembershipIn
) -> tuple[Quote | None, list[InvalidInput]]:
    """Every check of one membership (the form shows them all): its quote, or the refusals."""
    kit = joined_kit(employer)
    quote, errors = evaluate(employer=employer, kit=kit, data=data)
    key = rules.person_key(data.last_name, data.first_name, data.birth_date)
    if key in _open_keys(employer, [key]):
        errors.insert(0, _duplicate(data))
    return (None if errors else quote), errors


def preview_membership(*, employer: Employer, data: MembershipIn) -> Quote:
    """The confirmation step: every check and the amounts, nothing written."""
    quote, errors = check_membership(employer=employer, data=data)
    if errors:
        raise errors[0]
    return quote  # type: ignore[return-value]


def reserve_references(cdg_code: str, count: int) -> list[str]:
    """`ADH-81-000123`: a per-CDG sequence (in the kits' counter table, its own key), safe
    under concurrency (the row is locked until the commit); a number is never reused."""
    key = f"ADH{cdg_code}"
    where = (KitCounter.cdg_code == key, KitCounter.year == _REFERENCE_YEAR)
    counter = db.session.execute(select(KitCounter).where(*where).with_for_update()).scalar()
    if counter is None:
        db.session.add(KitCounter(cdg_code=key, year=_REFERENCE_YEAR, last=0))
        db.session.flush()
    db.session.execute(
        update(KitCounter).where(*where).values(last=KitCounter.last + count),
        execution_options={"synchronize_session": False},
    )
    last = db.session.execute(select(KitCounter.last).where(*where)).scalar_one()
    return [f"ADH-{cdg_code}-{n:06d}" for n in range(last - count + 1, last + 1)]


def _membership(
    *, employer: Employer, kit: Kit, data: MembershipIn, quote: Quote, reference: str, actor: str
) -> Membership:
    values = _membership_values(
        employer=employer, kit=kit, data=data, quote=quote, reference=reference, actor=actor
    )
    return Membership(employer=employer, **values)


def _membership_values(
    *, employer: Employer, kit: Kit, data: MembershipIn, quote: Quote, reference: str, actor: str
) -> dict[str, Any]:
    base = {
        k: f"{parse_amount(normalize_amount(v), field=k):.2f}"
        for k, v in _elements(data).items()
        if k in BASE_COMPONENTS
    }
    return dict(
        reference=reference,
        employer_id=employer.id,
        convention_id=employer.convention_id,
        kit_id=kit.id,
        last_name=data.last_name,
        first_name=data.first_name,
        birth_date=data.birth_date,
        person_key=rules.person_key(data.last_name, data.first_name, data.birth_date),
        email=str(data.email).lower(),
        status=data.status,
        category=data.category,
        paid_by_hour_or_day=data.paid_by_hour_or_day,
        in_normal_service=data.in_normal_service,
        on_sick_leave=data.on_sick_leave,
        returned_on=data.returned_on,
        previous_collective_contract=data.previous_collective_contract,
        has_individual_contract=data.has_individual_contract,
        base=base,
        options=[o.code for o in quote.options],
        joins_on=data.joins_on,
        base_amount=quote.base,
        premium=quote.premium,
        employer_contribution=quote.employer_contribution,
        employee_share=quote.employee_share,
        state=INVITED,
        created_by=actor,
    )


def register_membership(
    *, employer: Employer, data: MembershipIn, principal: Principal
) -> Membership:
    """Record one membership (state `invited`), audit it and queue the agent's e-mail with its
    single-use link, all in the caller's transaction."""
    require_registrar(principal, employer)
    quote = preview_membership(employer=employer, data=data)
    kit = joined_kit(employer)
    (reference,) = reserve_references(employer.cdg.code, 1)
    membership = _membership(
        employer=employer,
        kit=kit,
        data=data,
        quote=quote,
        reference=reference,
        actor=principal.actor,
    )
    try:
        with db.session.begin_nested():
            db.session.add(membership)
            db.session.flush()
    except IntegrityError as exc:  # the same person registered meanwhile
        raise _duplicate(data) from exc
    record(
        "membership_registered",
        actor=principal.actor,
        kit_id=kit.id,
        siret=employer.siret,
        details={"subject": f"adhésion {reference}", "reference": reference},
    )
    membership_confirmed(membership)
    return membership


# -- many memberships: all rows or none ------------------------------------------------------


def _row_errors(row: int, errors: Iterable[ServiceError]) -> list[RowError]:
    return [RowError(row, e.field, e.code, e.message) for e in errors]


def _base_errors(raw: dict[str, Any]) -> list[InvalidInput]:
    """The pay elements' errors of a row other fields already refuse (every error at once)."""
    found = []
    base = raw.get("base") if isinstance(raw.get("base"), dict) else {}
    for name in BASE_COMPONENTS:
        try:
            parse_amount(normalize_amount(base.get(name) or "0"), field=name)
        except InvalidInput as exc:
            found.append(exc)
    return found


def _new_ids(model: Any, count: int) -> list[int]:
    """`count` primary keys taken up front, so that the rows of an import are written with
    plain batched INSERTs (no RETURNING statement per page to build and parse)."""
    if count == 0:
        return []
    table = model.__table__.name
    if db.session.get_bind().dialect.name == "postgresql":
        sql = text(
            "SELECT nextval(pg_get_serial_sequence(:table, 'id')) FROM generate_series(1, :n)"
        )
        return list(db.session.scalars(sql, {"table": table, "n": count}))
    # SQLite: the import holds the database's write lock (the reference counter was updated)
    last = db.session.scalar(select(func.max(model.id))) or 0
    return list(range(last + 1, last + count + 1))


def import_memberships(
    *, employer: Employer, rows: Sequence[tuple[int, dict[str, Any]]], principal: Principal
) -> list[Membership]:
    """Validate every row, then record them all in the caller's transaction, or none
    (`ImportRejected` listing every row's errors, also the same person twice in the file)."""
    require_registrar(principal, employer)
    kit = joined_kit(employer)
    if not rows:
        raise InvalidInput("Le fichier ne contient aucune ligne d'agent.", code="import_empty")
    errors: list[RowError] = []
    valid: list[tuple[int, MembershipIn, Quote, str]] = []
    seen: dict[str, int] = {}
    for line, raw in rows:
        try:
            data = MembershipIn.model_validate(raw)
        except ValidationError as exc:
            errors += _row_errors(line, [*field_errors(exc), *_base_errors(raw)])
            continue
        quote, found = evaluate(employer=employer, kit=kit, data=data)
        key = rules.person_key(data.last_name, data.first_name, data.birth_date)
        if key in seen:
            found.insert(
                0,
                Conflict(
                    f"Cet agent figure déjà à la ligne {seen[key]} du fichier.",
                    code="duplicate_agent",
                    field="last_name",
                ),
            )
        else:
            seen[key] = line
        if found:
            errors += _row_errors(line, found)
        elif quote is not None:
            valid.append((line, data, quote, key))
    already = _open_keys(employer, [key for _, _, _, key in valid])
    for line, data, _, key in valid:
        if key in already:
            errors += _row_errors(line, [_duplicate(data)])
    if errors:
        raise ImportRejected(sorted(errors, key=lambda e: e.row))
    references = reserve_references(employer.cdg.code, len(valid))
    ids = _new_ids(Membership, len(valid))
    now = utcnow()
    rows_values = [
        _membership_values(
            employer=employer,
            kit=kit,
            data=data,
            quote=quote,
            reference=reference,
            actor=principal.actor,
        )
        | {"id": new_id, "created_at": now, "updated_at": now}
        for (_, data, quote, _), reference, new_id in zip(valid, references, ids, strict=True)
    ]
    try:
        with db.session.begin_nested():
            # one batched INSERT (executemany) on the table, not through the ORM's bulk path
            # (which inspects every row), then the rows read back in one SELECT
            db.session.execute(insert(Membership.__table__), rows_values)
    except IntegrityError as exc:
        raise Conflict(
            "Un de ces agents a été inscrit entre-temps : recommencez l'import.",
            code="duplicate_agent",
        ) from exc
    wanted = set(ids)
    between = Membership.id.between(min(ids), max(ids))
    memberships = [
        m
        for m in db.session.scalars(select(Membership).where(between).order_by(Membership.id))
        if m.id in wanted
    ]
    confirm_memberships(employer, memberships)
    record(
        "memberships_imported",
        actor=principal.actor,
        kit_id=kit.id,
        siret=employer.siret,
        details={
            "subject": f"{len(memberships)} adhésion{'s' if len(memberships) > 1 else ''} "
            f"({references[0]} à {references[-1]})",
            "count": len(memberships),
        },
    )
    return memberships


# -- the employer's agents --------------------------------------------------------------------


def get_membership(membership_id: int, *, principal: Principal) -> Membership:
    """One membership: its employer's own, or any for the staff (404 otherwise)."""
    membership = db.session.get(Membership, membership_id)
    if (
        membership is None
        or principal.role not in ("admin", "staff", "employer")
        or not can_see_employer(principal, membership.employer)
    ):
        raise NotFound("Adhésion introuvable.", code="unknown_membership")
    return membership


def list_memberships(
    *,
    employer: Employer,
    q: str | None = None,
    state: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> tuple[int, list[Membership]]:
    query = select(Membership).where(Membership.employer_id == employer.id)
    if state:
        if state not in MEMBERSHIP_STATES:
            raise InvalidInput(
                "État inconnu : choisissez une adhésion en attente d'activation, en cours ou "
                "terminée.",
                code="invalid_state",
                field="state",
            )
        query = query.where(Membership.state == state)
    if q and q.strip():
        like = f"%{q.strip().lower()}%"
        query = query.where(
            or_(
                func.lower(Membership.last_name).like(like),
                func.lower(Membership.first_name).like(like),
                func.lower(Membership.email).like(like),
                func.lower(Membership.reference).like(like),
            )
        )
    total = db.session.scalar(select(func.count()).select_from(query.subquery())) or 0
    items = db.session.scalars(
        query.order_by(Membership.last_name, Membership.first_name, Membership.id)
        .limit(limit)
        .offset(offset)
    ).all()
    return total, list(items)


def leave_membership(*, membership: Membership, data: LeaveIn, principal: Principal) -> Membership:
    """The agent leaves on `left_on` (state `left`): their cover ends, the slot is freed."""
    if membership.state == LEFT:
        raise Conflict("Le départ de cet agent est déjà enregistré.", code="already_left")
    if data.left_on < membership.joins_on:
        raise InvalidInput(
            f"La date de départ ne peut pas précéder le début de la garantie, le "
            f"{long_date(membership.joins_on)}.",
            code="left_before_joining",
            field="left_on",
        )
    today = local_today()
    first_of_next = date(today.year + (today.month == 12), today.month % 12 + 1, 1)
    first_after = date(
        first_of_next.year + (first_of_next.month == 12), first_of_next.month % 12 + 1, 1
    )
    # a departure is recorded when it is near: the end of next month at the latest (or the
    # start of cover, for an agent who leaves before being covered)
    latest = max(first_after - timedelta(days=1), membership.joins_on)
    if data.left_on > latest:
        raise InvalidInput(
            f"La date de départ est trop lointaine : elle ne peut pas dépasser le "
            f"{long_date(latest)} ; enregistrez ce départ plus tard.",
            code="left_on_too_far",
            field="left_on",
        )
    # the activation links not yet used stop working: a departed agent opens no account
    db.session.execute(
        update(ActivationLink)
        .where(
            ActivationLink.membership_id == membership.id,
            ActivationLink.used_at.is_(None),
            ActivationLink.expires_at > utcnow(),
        )
        .values(expires_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    membership.state = LEFT
    membership.left_on = data.left_on
    membership.leave_reason = data.reason
    record(
        "membership_left",
        actor=principal.actor,
        kit_id=membership.kit_id,
        siret=membership.employer.siret,
        details={"subject": f"adhésion {membership.reference}", "reason": data.reason},
    )
    return membership


EXPORT_HEADERS = (
    "Référence",
    "Nom",
    "Prénom",
    "Date de naissance",
    "Courriel",
    "Statut",
    "Catégorie",
    "Options",
    "Assiette mensuelle",
    "Cotisation mensuelle",
    "Participation de l'employeur",
    "Reste à charge de l'agent",
    "Début de garantie",
    "État",
    "Date de départ",
    "Motif du départ",
    "Contrat individuel à résilier",
)


def export_rows(employer: Employer) -> list[list[str]]:
    """Every membership of the employer, in French, for the CSV export."""
    options = {o.code: o.label for o in convention_options(employer.convention)}
    _, items = list_memberships(employer=employer, limit=1_000_000)
    return [
        [
            m.reference,
            m.last_name,
            m.first_name,
            long_date(m.birth_date),
            m.email,
            capitalize_first(labels.agent_status(m.status)),
            labels.agent_category(m.category),
            ", ".join(options.get(code, "option") for code in m.options) or "aucune",
            money(m.base_amount),
            money(m.premium),
            money(m.employer_contribution),
            money(m.employee_share),
            long_date(m.joins_on),
            labels.membership_state(m.state),
            long_date(m.left_on) if m.left_on else "",
            m.leave_reason or "",
            "oui" if m.has_individual_contract else "non",
        ]
        for m in items
    ]


def membership_json(m: Membership) -> dict[str, Any]:
    return {
        "id": m.id,
        "reference": m.reference,
        "siret": m.employer.siret,
        "last_name": m.last_name,
        "first_name": m.first_name,
        "birth_date": m.birth_date.isoformat(),
        "email": m.email,
        "status": m.status,
        "category": m.category,
        "paid_by_hour_or_day": m.paid_by_hour_or_day,
        "in_normal_service": m.in_normal_service,
        "on_sick_leave": m.on_sick_leave,
        "returned_on": m.returned_on.isoformat() if m.returned_on else None,
        "previous_collective_contract": m.previous_collective_contract,
        "has_individual_contract": m.has_individual_contract,
        "base": m.base,
        "options": m.options,
        "joins_on": m.joins_on.isoformat(),
        "base_amount": f"{Decimal(m.base_amount):.2f}",
        "premium": f"{Decimal(m.premium):.2f}",
        "employer_contribution": f"{Decimal(m.employer_contribution):.2f}",
        "employee_share": f"{Decimal(m.employee_share):.2f}",
        "state": m.state,
        "left_on": m.left_on.isoformat() if m.left_on else None,
        "leave_reason": m.leave_reason,
    }


def quote_json(quote: Quote) -> dict[str, Any]:
    return {
        "base_amount": f"{quote.base:.2f}",
        "rate": f"{quote.rate:.2f}",
        "premium": f"{quote.premium:.2f}",
        "employer_contribution": f"{quote.employer_contribution:.2f}",
        "employee_share": f"{quote.employee_share:.2f}",
        "options": [o.code for o in quote.options],
        "notes": list(quote.notes),
    }


def first_of_next_month(day: date) -> date:
    return date(day.year + (day.month == 12), day.month % 12 + 1, 1)


def default_joins_on(employer: Employer) -> date:
    """When the upload says nothing: the first of next month, not before the employer's cover."""
    kit = current_kit(employer)
    cover = (kit.cover_starts_on if kit else None) or employer.joins_on
    return max(first_of_next_month(local_today()), cover)
