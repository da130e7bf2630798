"""Domain functions for CDGs, conventions and employers."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from decimal import Decimal
from typing import Any

from sqlalchemy import select

from service.accounts.auth import Principal
from service.errors import Conflict, InvalidInput, NotFound
from service.extensions import db
from service.reference.models import REGIMES, Cdg, Convention, Employer
from service.reference.rules import (
    normalize_siret,
    parse_capital,
    parse_contribution,
    parse_rate,
)
from service.reference.schemas import EMPLOYER_KINDS
from service.reference.simulation import Option
from service.reference.templates import template_set_exists

# -- CDG ---------------------------------------------------------------------------------------


def get_cdg(code: str, *, principal: Principal | None = None) -> Cdg:
    cdg = db.session.scalar(select(Cdg).where(Cdg.code == code))
    if cdg is None or (
        principal is not None and principal.role == "cdg" and principal.cdg_code != code
    ):
        raise NotFound(f"CDG inconnu : {code}.", code="unknown_cdg")
    return cdg


def _cdg_for_input(code: str) -> Cdg:
    cdg = db.session.scalar(select(Cdg).where(Cdg.code == code))
    if cdg is None:
        raise InvalidInput(f"CDG inconnu : « {code} ».", code="unknown_cdg", field="cdg")
    return cdg


def create_cdg(*, code: str, name: str, email: str) -> Cdg:
    if db.session.scalar(select(Cdg).where(Cdg.code == code)) is not None:
        raise Conflict(f"Le CDG {code} existe déjà.", code="duplicate_cdg")
    cdg = Cdg(code=code, name=name, email=email)
    db.session.add(cdg)
    db.session.flush()
    return cdg


def update_cdg(cdg: Cdg, *, name: str | None = None, email: str | None = None) -> Cdg:
    if name is not None:
        cdg.name = name
    if email is not None:
        cdg.email = email
    db.session.flush()
    return cdg


def list_cdgs() -> Sequence[Cdg]:
    return db.session.scalars(select(Cdg).order_by(Cdg.code)).all()


# -- Conventions -------------------------------------------------------------------------------


def _options(raw: list[Any]) -> list[dict[str, str]]:
    seen: set[str] = set()
    out = []
    for i, option in enumerate(raw):
        data = option if isinstance(option, dict) else option.model_dump()
        if data["code"] in seen:
            raise InvalidInput(
                f"Option en double : « {data['code']} ».",
                code="duplicate_option",
                field=f"options.{i}.code",
            )
        seen.add(data["code"])
        rate = parse_rate(data["rate"], field=f"options.{i}.rate")
        out.append({"code": data["code"], "label": data["label"], "rate": f"{rate:.2f}"})
    return out


def _check_period(starts_on: date, ends_on: date) -> None:
    if ends_on <= starts_on:
        raise InvalidInput(
            "La convention doit se terminer après son début.",
            code="invalid_period",
            field="ends_on",
        )


def create_convention(
    *,
    cdg: str,
    reference: str,
    insurer: str,
    manager: str,
    starts_on: date,
    ends_on: date,
    base_rate: Any,
    cdg_fee_rate: Any = "1.10",
    options: list[Any] | None = None,
    template_set: str = "default",
    insurer_legal_form: str | None = None,
    insurer_capital: Any = None,
    insurer_register: str | None = None,
    insurer_address: str | None = None,
    regime: str = "facultative",
) -> Convention:
    owner = _cdg_for_input(cdg)
    _check_regime(regime)
    _check_period(starts_on, ends_on)
    if not template_set_exists(template_set):
        raise InvalidInput(
            f"Jeu de modèles inconnu : « {template_set} ».",
            code="unknown_template_set",
            field="template_set",
        )
    exists = db.session.scalar(
        select(Convention).where(Convention.cdg_id == owner.id, Convention.reference == reference)
    )
    if exists is not None:
        raise Conflict(
            f"La convention « {reference} » existe déjà pour ce CDG.",
            code="duplicate_convention",
        )
    convention = Convention(
        cdg=owner,
        reference=reference,
        insurer=insurer,
        manager=manager,
        starts_on=starts_on,
        ends_on=ends_on,
        base_rate=parse_rate(base_rate, field="base_rate"),
        cdg_fee_rate=parse_rate(cdg_fee_rate, field="cdg_fee_rate"),
        options=_options(options or []),
        template_set=template_set,
        insurer_legal_form=insurer_legal_form,
        insurer_capital=parse_capital(insurer_capital),
        insurer_register=insurer_register,
        insurer_address=insurer_address,
        regime=regime,
    )
    db.session.add(convention)
    db.session.flush()
    return convention


def update_convention(convention: Convention, **changes: Any) -> Convention:
    starts_on = changes.get("starts_on") or convention.starts_on
    ends_on = changes.get("ends_on") or convention.ends_on
    _check_period(starts_on, ends_on)
    convention.starts_on, convention.ends_on = starts_on, ends_on
    for name in ("insurer", "manager", "insurer_legal_form", "insurer_register", "insurer_address"):
        if changes.get(name) is not None:
            setattr(convention, name, changes[name])
    if changes.get("insurer_capital") is not None:
        convention.insurer_capital = parse_capital(changes["insurer_capital"])
    for name in ("base_rate", "cdg_fee_rate"):
        if changes.get(name) is not None:
            setattr(convention, name, parse_rate(changes[name], field=name))
    if changes.get("options") is not None:
        convention.options = _options(changes["options"])
    if changes.get("template_set") is not None:
        if not template_set_exists(changes["template_set"]):
            raise InvalidInput(
                "Jeu de modèles inconnu.", code="unknown_template_set", field="template_set"
            )
        convention.template_set = changes["template_set"]
    if changes.get("regime") is not None:
        _change_regime(convention, changes["regime"])
    db.session.flush()
    return convention


# -- The regime in force (issue 12) ------------------------------------------------------------


def _check_regime(regime: str) -> str:
    if regime not in REGIMES:
        raise InvalidInput(
            "Régime inconnu : choisissez le contrat à adhésion facultative ou le contrat à "
            "adhésion obligatoire.",
            code="invalid_regime",
            field="regime",
        )
    return regime


def _change_regime(convention: Convention, regime: str) -> None:
    """A convention's regime changes only if every employer's scheme still holds under it."""
    _check_regime(regime)
    employers = db.session.scalars(
        select(Employer).where(Employer.convention_id == convention.id).order_by(Employer.siret)
    ).all()
    for employer in employers:
        try:
            parse_contribution(employer.contribution, regime=regime)
        except InvalidInput as exc:
            raise InvalidInput(
                f"Le régime ne peut changer : la participation de {employer.name} "
                f"(SIRET {employer.siret}) ne le respecterait plus. {exc.message}",
                code=exc.code,
                field="regime",
            ) from exc
    convention.regime = regime


def get_convention(convention_id: int, *, principal: Principal | None = None) -> Convention:
    convention = db.session.get(Convention, convention_id)
    if convention is None or (
        principal is not None
        and principal.role == "cdg"
        and convention.cdg.code != principal.cdg_code
    ):
        raise NotFound("Convention introuvable.", code="unknown_convention")
    return convention


def list_conventions(*, cdg: str | None = None) -> Sequence[Convention]:
    query = select(Convention).join(Cdg).order_by(Cdg.code, Convention.starts_on)
    if cdg:
        query = query.where(Cdg.code == cdg)
    return db.session.scalars(query).all()


def convention_options(convention: Convention) -> list[Option]:
    return [Option(o["code"], o["label"], Decimal(o["rate"])) for o in convention.options]


# -- Employers ---------------------------------------------------------------------------------


def _check_employer_dates(
    convention: Convention, cst_opinion_on: date, deliberation_on: date, joins_on: date
) -> None:
    if deliberation_on < cst_opinion_on:
        raise InvalidInput(
            "La délibération doit suivre l'avis du comité social territorial (CST).",
            code="deliberation_before_cst_opinion",
            field="deliberation_on",
        )
    period = f"du {convention.starts_on:%d/%m/%Y} au {convention.ends_on:%d/%m/%Y}"
    for field, value in (("cst_opinion_on", cst_opinion_on), ("deliberation_on", deliberation_on)):
        if value > convention.ends_on or value.year < convention.starts_on.year - 2:
            raise InvalidInput(
                f"Cette date est hors de la période de la convention ({period}).",
                code="date_outside_convention",
                field=field,
            )
    if not convention.starts_on <= joins_on <= convention.ends_on:
        raise InvalidInput(
            f"La date d'effet de l'adhésion doit être dans la période de la convention ({period}).",
            code="date_outside_convention",
            field="joins_on",
        )
    if joins_on < deliberation_on:
        raise InvalidInput(
            "L'adhésion ne peut prendre effet avant la délibération.",
            code="joins_before_deliberation",
            field="joins_on",
        )
    # a kit's cover starts on the first day of a month on or after the date of effect: that day
    # must still be within the convention, or no kit could ever be issued
    last = convention.ends_on.replace(day=1)
    if joins_on > last:
        raise InvalidInput(
            "Aucun kit ne pourrait être émis : la garantie commencerait le premier jour du mois "
            f"suivant cette date d'effet, après la fin de la convention ({period}). Choisissez "
            f"une date d'effet au plus tard le {last:%d/%m/%Y}.",
            code="cover_outside_convention",
            field="joins_on",
        )


def _default_joins_on(convention: Convention, deliberation_on: date) -> date:
    """First day of the month after the deliberation, not before the convention starts."""
    year, month = deliberation_on.year, deliberation_on.month + 1
    if month == 13:
        year, month = year + 1, 1
    return max(convention.starts_on, date(year, month, 1))


def _check_kind(kind: str) -> str:
    if kind not in EMPLOYER_KINDS:
        raise InvalidInput(
            "Type de collectivité inconnu (" + ", ".join(EMPLOYER_KINDS) + ").",
            code="invalid_kind",
            field="kind",
        )
    return kind


def create_employer(
    *,
    siret: str,
    name: str,
    kind: str,
    address: str,
    email: str,
    cdg: str,
    convention_id: int,
    headcount: int,
    cst_opinion_on: date,
    deliberation_on: date,
    contribution: Any,
    joins_on: date | None = None,
    signatory_gender: str | None = None,
) -> Employer:
    siret = normalize_siret(siret)
    owner = _cdg_for_input(cdg)
    convention = db.session.get(Convention, convention_id)
    if convention is None:
        raise InvalidInput("Convention inconnue.", code="unknown_convention", field="convention_id")
    if convention.cdg_id != owner.id:
        raise InvalidInput(
            "Cette convention n'est pas celle de ce CDG.",
            code="convention_not_of_cdg",
            field="convention_id",
        )
    _check_kind(kind)
    scheme = parse_contribution(contribution, regime=convention.regime)
    joins_on = joins_on or _default_joins_on(convention, deliberation_on)
    _check_employer_dates(convention, cst_opinion_on, deliberation_on, joins_on)
    if db.session.scalar(select(Employer).where(Employer.siret == siret)) is not None:
        raise Conflict(f"Un employeur existe déjà avec le SIRET {siret}.", code="duplicate_siret")
    employer = Employer(
        siret=siret,
        name=name,
        kind=kind,
        address=address,
        email=email,
        cdg=owner,
        convention=convention,
        headcount=headcount,
        cst_opinion_on=cst_opinion_on,
        deliberation_on=deliberation_on,
        joins_on=joins_on,
        contribution=scheme.to_json(),
        signatory_gender=signatory_gender,
    )
    db.session.add(employer)
    db.session.flush()
    return employer


def update_employer(employer: Employer, **changes: Any) -> Employer:
    convention = employer.convention
    if changes.get("convention_id") is not None:
        convention = db.session.get(Convention, changes["convention_id"])
        if convention is None or convention.cdg_id != employer.cdg_id:
            raise InvalidInput(
                "Convention inconnue pour ce CDG.",
                code="unknown_convention",
                field="convention_id",
            )
    if changes.get("kind") is not None:
        _check_kind(changes["kind"])
    scheme = parse_contribution(
        changes["contribution"]
        if changes.get("contribution") is not None
        else employer.contribution,
        regime=convention.regime,
    )
    cst = changes.get("cst_opinion_on") or employer.cst_opinion_on
    deliberation = changes.get("deliberation_on") or employer.deliberation_on
    joins = changes.get("joins_on") or employer.joins_on
    _check_employer_dates(convention, cst, deliberation, joins)
    employer.convention = convention
    employer.cst_opinion_on, employer.deliberation_on, employer.joins_on = cst, deliberation, joins
    for name in ("name", "kind", "address", "email", "headcount", "signatory_gender"):
        if changes.get(name) is not None:
            setattr(employer, name, changes[name])
    employer.contribution = scheme.to_json()
    db.session.flush()
    return employer


def get_employer(siret: str, *, principal: Principal | None = None) -> Employer:
    employer = db.session.scalar(select(Employer).where(Employer.siret == siret))
    if employer is None or not can_see_employer(principal, employer):
        raise NotFound("Employeur introuvable.", code="unknown_employer")
    return employer


def can_see_employer(principal: Principal | None, employer: Employer) -> bool:
    if principal is None or principal.role in ("admin", "staff"):
        return True
    if principal.role == "cdg":
        return employer.cdg.code == principal.cdg_code
    return principal.role == "employer" and principal.siret == employer.siret
