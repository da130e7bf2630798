"""Every access letter of a campaign in one print-ready PDF.

The letters are the kits' stored `access-letter` documents (never rendered again): read from the
document store, concatenated with pikepdf in the employers' order (by name), each letter starting
on a recto (a letter with an odd page count gets a blank verso, so that printing recto-verso
never puts two employers on one sheet), with one bookmark per employer.

Which kits: those the campaign's jobs issued (`Job.campaign_id`, `Job.kit_id`) and still open
(`issued` or `employer_signed`): a superseded or cancelled kit's code no longer opens anything.
While the campaign runs, the letters issued so far are given, and the file name says « partiel ».
The letters carry the access codes: staff only, and each kit's journal records the download
(`letters_downloaded`) before the file is served.
"""

from __future__ import annotations

import io
import tempfile
import unicodedata
from dataclasses import dataclass
from typing import IO

import pikepdf
from sqlalchemy import select

from service.audit.domain import record
from service.campaigns.models import Campaign
from service.engine.models import Job
from service.errors import Conflict, NotFound
from service.extensions import db
from service.kits.lifecycle import OPEN_STATES
from service.kits.models import Kit, KitDocument
from service.reference.models import Employer
from storage import ObjectStore

LETTER = "access-letter"


@dataclass(frozen=True)
class Letter:
    employer_name: str
    siret: str
    kit_id: int
    kit_reference: str
    key: str
    sha256: str


@dataclass(frozen=True)
class CampaignLetters:
    campaign: Campaign
    letters: list[Letter]

    @property
    def partial(self) -> bool:
        return self.campaign.status != "finished"

    @property
    def filename(self) -> str:
        c = self.campaign
        suffix = "-partiel" if self.partial else ""
        return f"courriers-acces-cdg-{c.cdg_code}-campagne-{c.id}{suffix}.pdf"


def _name_key(name: str) -> tuple[str, str]:
    """French order: « Écoles » with the E, case and accents aside."""
    plain = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode().casefold()
    return plain, name


def get_campaign(campaign_id: int) -> Campaign:
    campaign = db.session.get(Campaign, campaign_id)
    if campaign is None:
        raise NotFound("Campagne introuvable.", code="unknown_campaign")
    return campaign


def campaign_letters(campaign_id: int) -> CampaignLetters:
    """The campaign's letters to print, in the employers' order (by name, then SIRET)."""
    campaign = get_campaign(campaign_id)
    rows = db.session.execute(
        select(Employer.name, Employer.siret, Kit.id, Kit.reference, KitDocument)
        .select_from(Job)
        .join(Kit, Kit.id == Job.kit_id)
        .join(Employer, Employer.id == Kit.employer_id)
        .join(KitDocument, (KitDocument.kit_id == Kit.id) & (KitDocument.kind == LETTER))
        .where(
            Job.campaign_id == campaign.id,
            Kit.status.in_(OPEN_STATES),
            # never another CDG's kit, whatever a job says
            Employer.cdg.has(code=campaign.cdg_code),
        )
    ).all()
    seen: set[int] = set()
    letters = []
    for name, siret, kit_id, reference, doc in rows:
        if kit_id in seen:  # a job retried and duplicated points at the same kit
            continue
        seen.add(kit_id)
        letters.append(Letter(name, siret, kit_id, reference, doc.pdf_key, doc.sha256))
    letters.sort(key=lambda letter: (*_name_key(letter.employer_name), letter.siret))
    if not letters:
        raise Conflict(
            "Aucun courrier à imprimer : cette campagne n'a encore émis aucun kit.",
            code="no_letters",
        )
    return CampaignLetters(campaign, letters)


def record_letters_download(letters: CampaignLetters, *, actor: str, address: str | None) -> None:
    """One `letters_downloaded` event in each kit's journal (the letter holds its access code);
    the caller commits before serving the file."""
    for letter in letters.letters:
        record(
            "letters_downloaded",
            actor=actor,
            kit_id=letter.kit_id,
            siret=letter.siret,
            address=address,
            sha256_after=letter.sha256,
            details={"kind": LETTER, "campaign": letters.campaign.id},
        )


def write_letters_pdf(letters: CampaignLetters, store: ObjectStore, out: IO[bytes]) -> int:
    """Write the one PDF to `out`; returns its page count."""
    pdf = pikepdf.new()
    sources: list[pikepdf.Pdf] = []
    campaign = letters.campaign
    try:
        with pdf.open_outline() as outline:
            for letter in letters.letters:
                try:
                    source = pikepdf.open(io.BytesIO(store.get(letter.key)))
                except pikepdf.PdfError as exc:
                    raise Conflict(
                        f"Le courrier d'accès du kit {letter.kit_reference} est illisible : "
                        "émettez de nouveau ce kit.",
                        code="letter_unreadable",
                    ) from exc
                sources.append(source)
                first = len(pdf.pages)
                pdf.pages.extend(source.pages)
                if len(source.pages) % 2:
                    box = source.pages[-1].mediabox
                    width, height = float(box[2]) - float(box[0]), float(box[3]) - float(box[1])
                    pdf.add_blank_page(page_size=(width, height))
                outline.root.append(
                    pikepdf.OutlineItem(f"{letter.employer_name} – {letter.kit_reference}", first)
                )
        pdf.Root.PageMode = pikepdf.Name.UseOutlines
        pdf.Root.Lang = pikepdf.String("fr-FR")
        pdf.docinfo[pikepdf.Name.Title] = pikepdf.String(
            f"Courriers d'accès – campagne n° {campaign.id} – CDG {campaign.cdg_code}"
        )
        pdf.save(out)
        return len(pdf.pages)
    finally:
        for source in sources:
            source.close()
        pdf.close()


def letters_file(letters: CampaignLetters, store: ObjectStore) -> tuple[IO[bytes], int]:
    """The PDF in a temporary file (a CDG's letters do not sit in memory), rewound, and its size."""
    out = tempfile.TemporaryFile()  # noqa: SIM115 - the response closes it once streamed
    try:
        write_letters_pdf(letters, store, out)
    except BaseException:
        out.close()
        raise
    size = out.tell()
    out.seek(0)
    return out, size
