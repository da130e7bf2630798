"""The membership certificate: one PDF/A-2b page laid out with the kit's fonts and stylesheet.

Its facts are plain French strings read from the membership; the PDF depends on nothing else
(no « made at » time: the document's dates are the membership's), so the same facts give the
same bytes and a small in-process cache keyed by the facts' digest serves repeated downloads
without laying the page out again.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from dataclasses import asdict, dataclass
from datetime import UTC

from weasyprint import HTML

from service import formatting, labels
from service.agents.models import Membership
from service.kits.render import template_set
from service.timeutil import DEFAULT_TIMEZONE, local
from service.wording import employer_designation

TEMPLATE = "membership-certificate.html"
#: certificates kept in memory (a few tens of kilobytes each)
CACHE_SIZE = 256


@dataclass(frozen=True)
class CertificateFacts:
    reference: str
    registered_on: str
    created_iso: str
    insurer: str
    insurer_address: str
    insurer_sentence: str
    manager: str
    cdg: str
    convention: str
    convention_period: str
    employer: str
    employer_the: str
    employer_of: str
    siret: str
    agent: str
    birth_date: str
    status: str
    category: str
    joins_on: str
    left_on: str
    state: str
    base_rate: str
    options: tuple[str, ...]
    base_amount: str
    premium: str
    employer_contribution: str
    employee_share: str
    individual_contract: bool
    template_set: str
    #: « contrat collectif à adhésion facultative » or « … obligatoire » (the convention's regime)
    regime: str = ""


def _cdg_phrase(name: str) -> str:
    """« Centre de gestion … » → « le centre de gestion … »."""
    if name.lower().startswith("centre"):
        return "le c" + name[1:]
    return name


def certificate_facts(membership: Membership, *, zone: str = DEFAULT_TIMEZONE) -> CertificateFacts:
    convention = membership.convention
    employer = membership.employer
    who = employer_designation(employer)
    known = {o["code"]: o for o in convention.options or []}
    options = tuple(
        f"{known[code]['label']} ({formatting.percent(known[code]['rate'])} de l'assiette)"
        if code in known
        else labels.option(code)
        for code in membership.options or []
    )
    created = membership.created_at
    aware = created if created.tzinfo is not None else created.replace(tzinfo=UTC)
    return CertificateFacts(
        reference=membership.reference,
        registered_on=formatting.long_date(local(aware, zone).date()),
        created_iso=aware.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z"),
        insurer=convention.insurer,
        insurer_address=convention.insurer_address or "",
        insurer_sentence=(
            f"{convention.insurer}, représentée par son gestionnaire {convention.manager},"
        ),
        manager=convention.manager,
        cdg=_cdg_phrase(convention.cdg.name),
        convention=convention.reference,
        convention_period=(
            f"du {formatting.long_date(convention.starts_on)} "
            f"au {formatting.long_date(convention.ends_on)}"
        ),
        employer=formatting.capitalize_first(who.the),
        employer_the=who.the,
        employer_of=who.of_the,
        siret=formatting.siret(employer.siret),
        agent=f"{membership.last_name.upper()} {membership.first_name}",
        birth_date=formatting.long_date(membership.birth_date),
        status=formatting.capitalize_first(labels.agent_status(membership.status)),
        category=membership.category,
        joins_on=formatting.long_date(membership.joins_on),
        left_on=formatting.long_date(membership.left_on) if membership.left_on else "",
        state=labels.membership_state(membership.state),
        base_rate=formatting.percent(convention.base_rate),
        options=options,
        base_amount=formatting.money(membership.base_amount),
        premium=formatting.money(membership.premium),
        employer_contribution=formatting.money(membership.employer_contribution),
        employee_share=formatting.money(membership.employee_share),
        individual_contract=bool(membership.has_individual_contract),
        template_set=convention.template_set,
        regime=labels.regime_wording(convention.regime)["name"],
    )


def render_certificate(facts: CertificateFacts) -> bytes:
    templates = template_set(facts.template_set)
    html = templates.env.get_template(TEMPLATE).render(c=facts)
    document = HTML(string=html, base_url=str(templates.html_dir) + "/").render(
        stylesheets=[templates.stylesheet], font_config=templates.fonts
    )
    return document.write_pdf(pdf_variant="pdf/a-2b")


class _Cache:
    """A small LRU of rendered certificates, keyed by the SHA-256 of their facts."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.items: OrderedDict[str, bytes] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, key: str) -> bytes | None:
        with self.lock:
            pdf = self.items.get(key)
            if pdf is not None:
                self.items.move_to_end(key)
            return pdf

    def put(self, key: str, pdf: bytes) -> None:
        with self.lock:
            self.items[key] = pdf
            self.items.move_to_end(key)
            while len(self.items) > self.size:
                self.items.popitem(last=False)


_cache = _Cache(CACHE_SIZE)


def facts_digest(facts: CertificateFacts) -> str:
    return hashlib.sha256(
        json.dumps(asdict(facts), sort_keys=True, ensure_ascii=False).encode()
    ).hexdigest()


def membership_certificate(membership: Membership, *, zone: str = DEFAULT_TIMEZONE) -> bytes:
    """The certificate of `membership` as it stands: rendered once per distinct content."""
    facts = certificate_facts(membership, zone=zone)
    key = facts_digest(facts)
    pdf = _cache.get(key)
    if pdf is None:
        pdf = render_certificate(facts)
        _cache.put(key, pdf)
    return pdf


def file_name(membership: Membership) -> str:
    return f"certificat-adhesion-{membership.reference}.pdf"
