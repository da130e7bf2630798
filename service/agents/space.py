"""The agent's side: activating an account from the e-mailed link, signing in, the agent's own
memberships and their beneficiary designations.

An agent acts through a `Principal` of role `agent` bound to one `AgentAccount`: every lookup
here goes through `agent_membership`, so another agent's membership is simply not found (404).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from service import formatting, labels
from service.accounts.auth import (
    Principal,
    hash_password,
    hash_token,
    issue_token,
    verify_password,
)
from service.accounts.models import ApiToken
from service.agents.models import (
    ActivationLink,
    AgentAccount,
    BeneficiaryDesignation,
    Membership,
)
from service.agents.notify import activation_token_hash
from service.audit.domain import record
from service.errors import Conflict, InvalidInput, NotFound, ServiceError, Unauthorized
from service.extensions import db
from service.kits.domain import current_kit, get_document, local_today
from service.kits.models import Kit, KitDocument
from service.ratelimit import Rule, limiter
from service.timeutil import iso, utcnow
from service.wording import employer_designation

log = logging.getLogger(__name__)

#: the password policy of agents' accounts (staff's is 10 characters; agents' accounts hold
#: personal data and the designation of their beneficiaries)
PASSWORD_MIN = 12
PASSWORD_MAX = 200
#: lifetime of the bearer token `POST /agents/session` gives
AGENT_TOKEN_HOURS = 2

# failed agent sign-ins (and wrong passwords when a link attaches a membership to an existing
# account): per address, per address + e-mail with a stepped backoff; every address together
# per e-mail is only watched, so that a stranger can never lock the agent out
AGENT_ADDRESS = Rule.of("agent-address", "20/15 minutes; 100/day")
AGENT_ACCOUNT_ADDRESS = Rule.of("agent-account-address", "5/15 minutes; 10/hour; 20/day")
AGENT_ACCOUNT_WATCH = Rule.of("agent-account-watch", "50/hour; 200/day")

#: the convention's death cover option: its code, or an option labelled « Décès … »
DEATH_CODES = frozenset({"deces", "décès", "death"})
MAX_BENEFICIARIES = 10
CLAUSES = ("standard", "specific")


class LinkExpired(ServiceError):
    """The activation link is past its date (410)."""

    status = 410
    code = "activation_link_expired"
    message = (
        "Ce lien d'activation a expiré : demandez à votre employeur de vous renvoyer "
        "la confirmation de votre adhésion."
    )


# -- activation ------------------------------------------------------------------------------


def check_password(password: str) -> None:
    if len(password) < PASSWORD_MIN:
        raise InvalidInput(
            f"Choisissez un mot de passe d'au moins {PASSWORD_MIN} caractères.",
            code="weak_password",
            field="password",
        )
    if len(password) > PASSWORD_MAX:
        raise InvalidInput(
            f"Le mot de passe compte au plus {PASSWORD_MAX} caractères.",
            code="password_too_long",
            field="password",
        )
    if not password.strip():
        raise InvalidInput(
            "Le mot de passe ne peut pas être fait que d'espaces.",
            code="weak_password",
            field="password",
        )


@dataclass(frozen=True)
class LinkInfo:
    """What the activation page says before the agent types anything."""

    email: str
    first_name: str
    reference: str
    has_account: bool


def _valid_link(token: str, *, lock: bool = False) -> ActivationLink:
    query = select(ActivationLink).where(ActivationLink.token_hash == activation_token_hash(token))
    if lock:
        query = query.with_for_update()
    link = db.session.scalar(query) if token else None
    if link is None:
        raise NotFound(
            "Ce lien d'activation est inconnu : vérifiez qu'il est recopié en entier depuis "
            "le courriel reçu.",
            code="activation_link_unknown",
        )
    if link.used_at is not None:
        raise Conflict(
            "Ce lien d'activation a déjà servi : connectez-vous avec votre adresse et votre "
            "mot de passe.",
            code="activation_link_used",
        )
    if link.expires_at <= utcnow():
        raise LinkExpired()
    return link


def _account(email: str) -> AgentAccount | None:
    return db.session.scalar(select(AgentAccount).where(AgentAccount.email == email.lower()))


def link_info(token: str) -> LinkInfo:
    link = _valid_link(token)
    account = _account(link.email)
    return LinkInfo(
        email=link.email,
        first_name=link.membership.first_name,
        reference=link.membership.reference,
        has_account=account is not None and account.password_hash is not None,
    )


@dataclass(frozen=True)
class Activation:
    account: AgentAccount
    membership: Membership
    created: bool


def activate(*, token: str, password: str, address: str | None) -> Activation:
    """Use the link once: create the account for the link's address (or, when the address
    already has one, prove it with its password) and attach the membership to it."""
    try:
        link = _valid_link(token, lock=True)
    except (Conflict, LinkExpired) as exc:  # a known link: its refusal joins the audit trail
        spent = db.session.scalar(
            select(ActivationLink).where(ActivationLink.token_hash == activation_token_hash(token))
        )
        if spent is not None:
            _refused(
                spent,
                address,
                "lien expiré" if isinstance(exc, LinkExpired) else "lien déjà utilisé",
            )
        raise
    email = link.email.strip().lower()
    membership = link.membership
    account = _account(email)
    created = account is None or account.password_hash is None
    now = utcnow()
    if not created:
        assert account is not None
        rules = _throttle(email, address)
        _check(rules)
        if not verify_password(account.password_hash, password):
            _fail(email, address, rules)
            _refused(link, address, "mot de passe du compte existant incorrect")
            raise Unauthorized(
                "Un compte existe déjà pour cette adresse : saisissez son mot de passe pour y "
                "rattacher cette adhésion.",
                code="invalid_credentials",
            )
    else:
        check_password(password)
        if account is None:
            account = AgentAccount(email=email)
            db.session.add(account)
        account.password_hash = hash_password(password)
        account.activated_at = now
    try:
        db.session.flush()
    except IntegrityError as exc:  # the same address activated at the same moment elsewhere
        db.session.rollback()
        raise Conflict(
            "Un compte vient d'être créé pour cette adresse : réessayez avec son mot de passe.",
            code="account_exists",
        ) from exc
    # the link is spent by whoever flips `used_at` first: a concurrent use of the same link
    # (two clicks, two devices) finds it used, on SQLite as on PostgreSQL
    spent = db.session.execute(
        update(ActivationLink)
        .where(ActivationLink.id == link.id, ActivationLink.used_at.is_(None))
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )
    if spent.rowcount != 1:
        db.session.rollback()
        raise Conflict(
            "Ce lien d'activation a déjà servi : connectez-vous avec votre adresse et votre "
            "mot de passe.",
            code="activation_link_used",
        )
    membership.account_id = account.id
    if membership.state == "invited":
        membership.state = "active"
    record(
        "agent_account_created" if created else "agent_membership_attached",
        actor=f"agent:{email}",
        siret=membership.employer.siret,
        address=address,
        details={"membership": membership.reference},
    )
    return Activation(account=account, membership=membership, created=created)


def _refused(link: ActivationLink, address: str | None, reason: str) -> None:
    """Record a refused use of a known link (in French: the trail's pages show the reason),
    committed before the refusal is raised."""
    db.session.rollback()
    record(
        "agent_activation_refused",
        actor=f"agent:{link.email.strip().lower()}",
        siret=link.membership.employer.siret,
        address=address,
        details={"membership": link.membership.reference, "reason": reason},
    )
    db.session.commit()


# -- sign-in ---------------------------------------------------------------------------------


def _throttle(email: str, address: str | None) -> list[tuple[Rule, tuple[str, ...]]]:
    where = address or "inconnue"
    return [(AGENT_ADDRESS, (where,)), (AGENT_ACCOUNT_ADDRESS, (email, where))]


def _check(rules: list[tuple[Rule, tuple[str, ...]]]) -> None:
    for rule, ids in rules:
        limiter().check(rule, *ids)


def _fail(email: str, address: str | None, rules: list[tuple[Rule, tuple[str, ...]]]) -> None:
    limits = limiter()
    for rule, ids in rules:
        limits.hit(rule, *ids)
    limits.hit(AGENT_ACCOUNT_WATCH, email)
    if limits.retry_after(AGENT_ACCOUNT_WATCH, email) is not None:
        log.warning("wrong agent passwords keep coming for %r (last from %s)", email, address)


def sign_in(*, email: str, password: str, address: str | None) -> AgentAccount:
    """Check an agent's password; 429 with `Retry-After` while throttled. The answer and its
    cost are the same whether the address has an account or not."""
    email = email.strip().lower()
    rules = _throttle(email, address)
    _check(rules)
    account = _account(email)
    # verify_password hashes the attempt when there is no account: the same cost either way
    if not verify_password(account.password_hash if account is not None else None, password):
        _fail(email, address, rules)
        raise Unauthorized("Adresse ou mot de passe incorrect.", code="invalid_credentials")
    limiter().clear(AGENT_ACCOUNT_ADDRESS, email, address or "inconnue")
    assert account is not None
    return account


def open_agent_session(*, email: str, password: str, address: str | None) -> tuple[str, datetime]:
    """`POST /agents/session`: a bearer token of role `agent`, expiring."""
    account = sign_in(email=email, password=password, address=address)
    expires = utcnow() + timedelta(hours=AGENT_TOKEN_HOURS)
    token = issue_token(role="agent", agent_account_id=account.id, expires_at=expires)
    record("agent_session", actor=f"agent:{account.email}", address=address)
    return token, expires


def close_agent_session(*, principal: Principal, token: str) -> None:
    """`DELETE /agents/session`: the agent's bearer token stops working at once."""
    account_id = _require_agent(principal)
    row = db.session.scalar(select(ApiToken).where(ApiToken.token_hash == hash_token(token)))
    if row is not None and row.agent_account_id == account_id:
        row.revoked = True


# -- the agent's memberships ------------------------------------------------------------------


def _require_agent(principal: Principal) -> int:
    if principal.role != "agent" or principal.agent_account_id is None:
        raise NotFound()
    return principal.agent_account_id


def agent_memberships(principal: Principal) -> list[Membership]:
    account_id = _require_agent(principal)
    return list(
        db.session.scalars(
            select(Membership).where(Membership.account_id == account_id).order_by(Membership.id)
        )
    )


def agent_membership(principal: Principal, membership_id: int | None) -> Membership:
    """The agent's membership `membership_id`, or its only one when none is named; another
    agent's membership is not found."""
    account_id = _require_agent(principal)
    if membership_id is not None:
        membership = db.session.get(Membership, membership_id)
        if membership is None or membership.account_id != account_id:
            raise NotFound("Adhésion introuvable.", code="membership_not_found")
        return membership
    memberships = agent_memberships(principal)
    if not memberships:
        raise NotFound("Aucune adhésion n'est rattachée à votre compte.", code="no_membership")
    if len(memberships) > 1:
        raise InvalidInput(
            "Vous avez plusieurs adhésions : précisez laquelle (paramètre « membership »).",
            code="membership_required",
            field="membership",
        )
    return memberships[0]


def option_labels(membership: Membership) -> list[dict[str, str]]:
    known = {o["code"]: o for o in membership.convention.options or []}
    return [
        {
            "code": code,
            "label": known[code]["label"] if code in known else labels.option(code),
            "rate": str(known[code]["rate"]) if code in known else "",
        }
        for code in membership.options or []
    ]


def death_codes(membership: Membership) -> set[str]:
    """The codes of the convention's death cover options."""
    return {
        o["code"]
        for o in membership.convention.options or []
        if o["code"].lower() in DEATH_CODES or str(o.get("label", "")).lower().startswith("décès")
    } | {"deces"}


def has_death_cover(membership: Membership) -> bool:
    return bool(death_codes(membership) & set(membership.options or []))


def membership_summary(membership: Membership) -> dict[str, Any]:
    """A membership as the agent reads it (API and pages): codes with their French labels,
    money as strings with two decimals."""
    convention = membership.convention
    return {
        "id": membership.id,
        "reference": membership.reference,
        "employer": {
            "siret": membership.employer.siret,
            "name": membership.employer.name,
            "designation": formatting.capitalize_first(
                employer_designation(membership.employer).the
            ),
        },
        "convention": {
            "reference": convention.reference,
            "insurer": convention.insurer,
            "manager": convention.manager,
        },
        "last_name": membership.last_name,
        "first_name": membership.first_name,
        "state": membership.state,
        "state_label": labels.membership_state(membership.state),
        "joins_on": membership.joins_on.isoformat(),
        "left_on": membership.left_on.isoformat() if membership.left_on else None,
        "options": option_labels(membership),
        "death_cover": has_death_cover(membership),
        "has_individual_contract": membership.has_individual_contract,
        "premium_breakdown": {
            "base": f"{membership.base_amount:.2f}",
            "premium": f"{membership.premium:.2f}",
            "employer_contribution": f"{membership.employer_contribution:.2f}",
            "employee_share": f"{membership.employee_share:.2f}",
        },
    }


def membership_notice(membership: Membership) -> KitDocument:
    """The information notice of the employer's current kit (else of the kit the agent
    joined under)."""
    kit = current_kit(membership.employer)
    if kit is None and membership.kit_id is not None:
        kit = db.session.get(Kit, membership.kit_id)
    if kit is None:
        raise NotFound(
            "La notice d'information n'est pas encore disponible pour votre employeur.",
            code="notice_not_available",
        )
    return get_document(kit, "information-notice")


# -- beneficiaries ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Beneficiary:
    name: str
    birth_date: date
    relationship: str
    share: Decimal


def designations(membership: Membership) -> list[BeneficiaryDesignation]:
    """Newest first: the first one is in force."""
    return list(
        db.session.scalars(
            select(BeneficiaryDesignation)
            .where(BeneficiaryDesignation.membership_id == membership.id)
            .order_by(BeneficiaryDesignation.id.desc())
        )
    )


def _check_beneficiaries(items: list[Beneficiary], *, today: date) -> list[dict[str, Any]]:
    if not items:
        raise InvalidInput(
            "Une clause particulière nomme au moins un bénéficiaire.",
            code="beneficiaries_missing",
            field="beneficiaries",
        )
    if len(items) > MAX_BENEFICIARIES:
        raise InvalidInput(
            f"Au plus {MAX_BENEFICIARIES} bénéficiaires nommés.",
            code="too_many_beneficiaries",
            field="beneficiaries",
        )
    rows = []
    for index, item in enumerate(items):
        where = f"beneficiaries.{index}"
        rank = f"bénéficiaire n° {index + 1}"
        name = " ".join(item.name.split())
        if not name:
            raise InvalidInput(
                f"Indiquez le nom du {rank}.",
                code="beneficiary_name_missing",
                field=f"{where}.name",
            )
        if item.birth_date > today:
            raise InvalidInput(
                f"La date de naissance du {rank} est dans le futur.",
                code="birth_date_in_future",
                field=f"{where}.birth_date",
            )
        if item.birth_date.year < 1900:
            raise InvalidInput(
                f"La date de naissance du {rank} est invalide.",
                code="invalid_birth_date",
                field=f"{where}.birth_date",
            )
        if item.relationship not in labels.RELATIONSHIPS:
            raise InvalidInput(
                f"Lien avec le {rank} inconnu : " + ", ".join(labels.RELATIONSHIPS.values()) + ".",
                code="invalid_relationship",
                field=f"{where}.relationship",
            )
        share = item.share
        if (
            not share.is_finite()
            or share <= 0
            or share > 100
            or share != share.quantize(Decimal("0.01"))
        ):
            raise InvalidInput(
                f"La part du {rank} est un pourcentage de 0,01 à 100 (deux décimales au plus).",
                code="invalid_share",
                field=f"{where}.share",
            )
        rows.append(
            {
                "name": name,
                "birth_date": item.birth_date.isoformat(),
                "relationship": item.relationship,
                "share": f"{share:.2f}",
            }
        )
    total = sum((item.share for item in items), Decimal(0))
    if total != 100:
        raise InvalidInput(
            f"Les parts des bénéficiaires totalisent {formatting.percent(total)} : "
            "elles doivent faire exactement 100 %.",
            code="shares_not_100",
            field="beneficiaries",
        )
    return rows


def designate_beneficiaries(
    *,
    principal: Principal,
    membership_id: int | None,
    clause: str,
    beneficiaries: list[Beneficiary],
    address: str | None = None,
) -> BeneficiaryDesignation:
    """A new designation (the previous ones stay as history), in the caller's transaction."""
    membership = agent_membership(principal, membership_id)
    if not has_death_cover(membership):
        raise Conflict(
            "Votre adhésion ne comprend pas l'option décès : il n'y a pas de bénéficiaires "
            "à désigner.",
            code="no_death_cover",
        )
    if membership.state == "left":
        raise Conflict(
            "Cette adhésion a pris fin : sa désignation de bénéficiaires ne se modifie plus.",
            code="membership_left",
        )
    if clause not in CLAUSES:
        raise InvalidInput(
            "Clause inconnue : clause type ou clause particulière.",
            code="invalid_clause",
            field="clause",
        )
    if clause == "standard":
        if beneficiaries:
            raise InvalidInput(
                "La clause type ne nomme pas de bénéficiaires : choisissez la clause "
                "particulière pour en nommer.",
                code="beneficiaries_not_expected",
                field="beneficiaries",
            )
        rows: list[dict[str, Any]] = []
    else:
        rows = _check_beneficiaries(beneficiaries, today=local_today())
    designation = BeneficiaryDesignation(
        membership_id=membership.id,
        clause=clause,
        beneficiaries=rows,
        created_by=principal.actor,
        created_at=utcnow(),
    )
    db.session.add(designation)
    record(
        "beneficiaries_designated",
        actor=principal.actor,
        siret=membership.employer.siret,
        address=address,
        details={"membership": membership.reference, "clause": clause, "count": len(rows)},
    )
    db.session.flush()
    return designation


def designation_summary(designation: BeneficiaryDesignation) -> dict[str, Any]:
    return {
        "id": designation.id,
        "clause": designation.clause,
        "clause_label": labels.clause(designation.clause),
        "standard_text": labels.STANDARD_CLAUSE if designation.clause == "standard" else None,
        "beneficiaries": [
            {**b, "relationship_label": labels.relationship(b.get("relationship"))}
            for b in designation.beneficiaries or []
        ],
        "created_at": iso(designation.created_at),
    }


def beneficiaries_summary(membership: Membership) -> dict[str, Any]:
    """The designation in force (None before the first) and every one before it."""
    rows = designations(membership)
    return {
        "membership": membership.id,
        "reference": membership.reference,
        "death_cover": has_death_cover(membership),
        "current": designation_summary(rows[0]) if rows else None,
        "history": [designation_summary(row) for row in rows[1:]],
    }
