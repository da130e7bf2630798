"""French formatting of amounts, rates and dates, as users read them."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

NBSP = "\u00a0"
MONTHS = (
    "janvier",
    "février",
    "mars",
    "avril",
    "mai",
    "juin",
    "juillet",
    "août",
    "septembre",
    "octobre",
    "novembre",
    "décembre",
)


def money(value: Decimal | str | int | float | None) -> str:
    """`Decimal("1234.5")` → `1 234,50 €` (non-breaking spaces)."""
    if value is None or value == "":
        return ""
    amount = Decimal(str(value)).quantize(Decimal("0.01"))
    sign = "-" if amount < 0 else ""
    whole, cents = f"{abs(amount):.2f}".split(".")
    groups = []
    while whole:
        groups.insert(0, whole[-3:])
        whole = whole[:-3]
    return f"{sign}{NBSP.join(groups)},{cents}{NBSP}€"


def percent(value: Decimal | str | float) -> str:
    """`Decimal("2.30")` → `2,30 %`."""
    return f"{Decimal(str(value)):.2f}".replace(".", ",") + f"{NBSP}%"


def long_date(value: date | None) -> str:
    """`date(2025, 1, 1)` → `1er janvier 2025`; `date(2022, 4, 20)` → `20 avril 2022`."""
    if value is None:
        return ""
    day = "1er" if value.day == 1 else str(value.day)
    return f"{day} {MONTHS[value.month - 1]} {value.year}"


def short_date(value: date | None) -> str:
    return "" if value is None else f"{value:%d/%m/%Y}"


def group_code(code: str, size: int = 4) -> str:
    return "-".join(code[i : i + size] for i in range(0, len(code), size))


def siret(value: str) -> str:
    """`21810004800019` → `218 100 048 00019`."""
    return f"{value[:3]} {value[3:6]} {value[6:9]} {value[9:]}" if len(value) == 14 else value


# -- French grammar that follows the employer ---------------------------------------------------

VOWELS = "aeiouyàâäéèêëîïôöùûüœæ"
#: beginnings of words whose h is aspirated: no elision (« de Hautpoul », « le Houga »)
ASPIRATED_H = ("haut", "hal", "ham", "hon", "hou")


def starts_with_vowel_sound(word: str) -> bool:
    """Elision applies before a vowel or a mute h: « d'Albi », « l'hôpital », « de Hautpoul »."""
    lowered = word.strip().lower()
    if not lowered:
        return False
    if lowered[0] in VOWELS:
        return True
    return lowered[0] == "h" and not lowered.startswith(ASPIRATED_H)


def of(name: str) -> str:
    """`de` before a name: « d'Allianz Vie », « de Collecteam », « du Bez », « des Cabannes »."""
    name = name.strip()
    if name.startswith("Le "):
        return "du " + name[3:]
    if name.startswith("Les "):
        return "des " + name[4:]
    return ("d'" if starts_with_vowel_sound(name) else "de ") + name


def capitalize_first(text: str) -> str:
    """« la commune d'Albi » → « La commune d'Albi » (the rest untouched, unlike `capitalize`)."""
    return text[:1].upper() + text[1:]


def capital(value: Decimal | str | int | None) -> str:
    """A share capital: `681879255` → `681 879 255 €`; cents only when there are some."""
    if value is None or value == "":
        return ""
    text = money(value)
    return text.replace(",00" + NBSP, NBSP) if text.endswith(",00" + NBSP + "€") else text


def plural(count: int, singular: str, plural_form: str | None = None) -> str:
    """`plural(1, "agent")` → `1 agent`; `plural(12, "agent")` → `12 agents`."""
    word = singular if abs(count) < 2 else (plural_form or singular + "s")
    return f"{count} {word}"


PRESIDENT = ("président", "présidente")


@dataclass(frozen=True)
class Kind:
    """A kind of employer: its noun and gender, the words names start with, its signatory."""

    noun: str
    feminine: bool
    #: how a name may already start (« CC Tarn-Agout », « Syndicat mixte … »), longest first
    prefixes: tuple[str, ...]
    #: (masculine, feminine) title of the person who signs for it
    signatory: tuple[str, str]
    #: the noun takes `de <name>` (« la commune d'Albi ») rather than the bare name
    of_name: bool = False


KINDS: dict[str, Kind] = {
    "commune": Kind("commune", True, ("commune", "mairie", "ville"), ("maire", "maire"), True),
    "cc": Kind("communauté de communes", True, ("communauté de communes", "cc"), PRESIDENT),
    "ca": Kind("communauté d'agglomération", True, ("communauté d'agglomération", "ca"), PRESIDENT),
    "ccas": Kind(
        "centre communal d'action sociale",
        False,
        ("centre communal d'action sociale", "ccas"),
        PRESIDENT,
        True,
    ),
    "cias": Kind(
        "centre intercommunal d'action sociale",
        False,
        ("centre intercommunal d'action sociale", "cias"),
        PRESIDENT,
    ),
    "syndicat": Kind("syndicat", False, ("syndicat",), PRESIDENT),
    "etablissement": Kind(
        "établissement public",
        False,
        ("établissement public local", "établissement public", "établissement"),
        ("directeur", "directrice"),
    ),
    "departement": Kind("département", False, ("conseil départemental", "département"), PRESIDENT),
}


def _with_article(phrase: str, feminine: bool) -> str:
    if starts_with_vowel_sound(phrase):
        return "l'" + phrase
    return ("la " if feminine else "le ") + phrase


@dataclass(frozen=True)
class Designation:
    """How the documents name an employer and the person who signs for it."""

    #: « commune d'Albi », « communauté d'agglomération de Castres Mazamet » (no article)
    phrase: str
    feminine: bool
    #: « maire », « présidente », « président ou présidente » when the gender is unknown
    title: str
    #: the title is known to be feminine, masculine, or unknown (None)
    title_feminine: bool | None

    @property
    def the(self) -> str:
        """« la commune d'Albi », « le syndicat … », « l'établissement public … »."""
        return _with_article(self.phrase, self.feminine)

    @property
    def of_the(self) -> str:
        """« de la commune d'Albi », « du syndicat … », « de l'établissement … »."""
        the = self.the
        return "du " + the[3:] if the.startswith("le ") else "de " + the

    @property
    def to_the(self) -> str:
        """« à la commune d'Albi », « au syndicat … », « à l'établissement … »."""
        the = self.the
        return "au " + the[3:] if the.startswith("le ") else "à " + the

    @property
    def signatory(self) -> str:
        """« le maire », « la présidente », « le président ou la présidente »."""
        if self.title_feminine is None and " ou " in self.title:
            masculine, feminine = self.title.split(" ou ")
            return f"le {masculine} ou la {feminine}"
        return _with_article(self.title, bool(self.title_feminine))

    @property
    def signatory_of(self) -> str:
        """« du maire », « de la présidente », « du président ou de la présidente »."""
        parts = []
        for part in self.signatory.split(" ou "):
            parts.append("du " + part[3:] if part.startswith("le ") else "de " + part)
        return " ou ".join(parts)

    @property
    def represented(self) -> str:
        """« représentée par son maire », « représenté par sa présidente »."""
        agreed = "représentée" if self.feminine else "représenté"
        if self.title_feminine is None and " ou " in self.title:
            masculine, feminine = self.title.split(" ou ")
            return f"{agreed} par son {masculine} ou sa {feminine}"
        if self.title_feminine and not starts_with_vowel_sound(self.title):
            return f"{agreed} par sa {self.title}"
        return f"{agreed} par son {self.title}"


def designation(kind: str, name: str, *, signatory_gender: str | None = None) -> Designation:
    """The grammar of an employer of `kind` named `name` (as the registers spell it).

    `signatory_gender` is "F", "M" or None (unknown: both titles are written out, never « (e) »).
    """
    spec = KINDS.get(kind)
    name = " ".join(name.split())
    if spec is None:
        return Designation(name, False, "représentant légal", False)
    lowered = name.lower()
    phrase = ""
    for prefix in spec.prefixes:
        if lowered == prefix or lowered.startswith(prefix + " "):
            rest = name[len(prefix) :].strip()
            phrase = f"{spec.noun} {rest}".strip()
            break
    if not phrase:
        phrase = f"{spec.noun} {of(name)}" if spec.of_name else f"{spec.noun} {name}"
    masculine, feminine = spec.signatory
    title_feminine: bool | None
    if masculine == feminine:
        title, title_feminine = masculine, signatory_gender == "F"
    elif signatory_gender == "M":
        title, title_feminine = masculine, False
    elif signatory_gender == "F":
        title, title_feminine = feminine, True
    else:
        title, title_feminine = f"{masculine} ou {feminine}", None
    return Designation(phrase, spec.feminine, title, title_feminine)


def file_stem(title: str) -> str:
    """A file name from a French title, in plain ASCII: `Conditions particulières` →
    `conditions-particulieres` (what a person saves never carries a code)."""
    ascii_title = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_title.lower()).strip("-")
