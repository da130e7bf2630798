"""How pages and e-mails name an employer, write a moment and agree words with a number.

Small helpers over `service.formatting` and `service.labels` (which keep the rules); the pages
register them as Jinja filters (`service.pages.wording`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from service.formatting import Designation, designation, plural
from service.labels import long_day, paris


class Named(Protocol):
    kind: str
    name: str
    signatory_gender: str | None


def employer_designation(employer: Named) -> Designation:
    """« la commune d'Albi », « la communauté d'agglomération de Castres-Mazamet »…"""
    return designation(
        employer.kind, employer.name, signatory_gender=getattr(employer, "signatory_gender", None)
    )


def long_when(value: datetime | None) -> str:
    """`22 novembre 2026 à 16 h 43`, in the readers' time zone (a sentence, not a table)."""
    local = paris(value)
    if local is None:
        return ""
    return f"{long_day(value)} à {local.hour}\u00a0h\u00a0{local:%M}"


def agree(count: int, singular: str, plural_form: str | None = None) -> str:
    """The word alone, agreed with `count`: `agree(12, "ajouté")` → `ajoutés` (0 and 1 singular)."""
    return plural(count, singular, plural_form).split(" ", 1)[1]


def counted(count: int, singular: str, plural_form: str | None = None) -> str:
    """`counted(12, "employeur")` → `12 employeurs`; `counted(1, "échec")` → `1 échec`."""
    return plural(count, singular, plural_form)


def after_colon(text: str | None) -> str:
    """French takes no capital after a colon: « Le fichier… » → « le fichier… ».

    An acronym or a name written in capitals (« PDF », « SIRET ») keeps its case."""
    if not text:
        return ""
    text = text.strip()
    if len(text) > 1 and text[0].isupper() and not text[1].isupper():
        return text[0].lower() + text[1:]
    return text
