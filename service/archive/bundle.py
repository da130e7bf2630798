"""A CDG's whole archive in one ZIP, streamed: every archived copy with its manifests, a folder
per employer and kit, and « sommaire.csv » listing each file with its SHA-256.

The members are read lazily from the archive store while the ZIP is written (stored, not
compressed: PDFs do not shrink), so that neither the copies nor the ZIP sit in memory; the
ZIP's size is known beforehand (each record's size), hence a Content-Length.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

import zipstream
from sqlalchemy import select

from service import labels
from service.archive.models import ArchiveRecord
from service.audit.domain import record
from service.csvfile import csv_text
from service.extensions import db
from service.formatting import siret as format_siret
from service.kits.models import Kit
from service.kits.render import file_stem
from service.reference.models import Employer
from storage import ObjectStore

SUMMARY = "sommaire.csv"
SUMMARY_COLUMNS = (
    "Collectivité",
    "SIRET",
    "Référence du kit",
    "Pièce",
    "Fichier",
    "Taille (octets)",
    "SHA-256",
    "Signataires",
    "Archivé le",
    "Conservé jusqu'au",
)
#: the file names of what is not a countersigned piece
NAMES = {"manifest": "manifeste.json", "proof": "certificat-de-preuve.pdf"}


@dataclass(frozen=True)
class Member:
    path: str
    key: str
    size: int
    sha256: str
    kind: str
    employer_name: str
    siret: str
    kit_id: int
    kit_reference: str
    signers: tuple[str, ...]
    archived_at: datetime
    retain_until: datetime | None


def member_name(kind: str, reference: str) -> str:
    """`PSC-81-2026-000001-conditions-particulieres-contresignee.pdf`, `…-manifeste.json`."""
    if kind in NAMES:
        return f"{reference}-{NAMES[kind]}"
    return labels.download_name(reference, kind, copy="countersigned")


def folder(name: str, siret: str) -> str:
    return f"{file_stem(name) or 'collectivite'}-{siret}"


def members(cdg_code: str) -> list[Member]:
    """The CDG's archived copies, by employer (name), kit, then piece."""
    rows = db.session.execute(
        select(ArchiveRecord, Employer.name)
        .join(Kit, Kit.id == ArchiveRecord.kit_id)
        .join(Employer, Employer.id == Kit.employer_id)
        .where(ArchiveRecord.cdg_code == cdg_code)
        .order_by(Employer.name, ArchiveRecord.siret, ArchiveRecord.kit_reference, ArchiveRecord.id)
    ).all()
    result = []
    for rec, name in rows:
        base = f"{folder(name, rec.siret)}/{rec.kit_reference}"
        result.append(
            Member(
                path=f"{base}/{member_name(rec.kind, rec.kit_reference)}",
                key=rec.key,
                size=rec.size,
                sha256=rec.sha256,
                kind=rec.kind,
                employer_name=name,
                siret=rec.siret,
                kit_id=rec.kit_id,
                kit_reference=rec.kit_reference,
                signers=tuple(rec.signers or ()),
                archived_at=rec.archived_at,
                retain_until=rec.retain_until,
            )
        )
    return result


def summary_csv(items: list[Member]) -> bytes:
    rows = [
        [
            m.employer_name,
            format_siret(m.siret),
            m.kit_reference,
            labels.document(m.kind),
            m.path,
            m.size,
            m.sha256,
            ", ".join(m.signers),
            labels.when(m.archived_at),
            labels.day(m.retain_until),
        ]
        for m in items
    ]
    return csv_text(SUMMARY_COLUMNS, rows).encode("utf-8")


def _lazy(store: ObjectStore, key: str) -> Iterator[bytes]:
    """The object's bytes, fetched only when the ZIP reaches this member."""
    yield from store.iter_chunks(key)


def build_zip(items: list[Member], store: ObjectStore, summary: bytes) -> zipstream.ZipStream:
    """The ZIP to stream (nothing is read from the store yet); `len()` gives its size."""
    zs = zipstream.ZipStream(compress_type=zipstream.ZIP_STORED, sized=True)
    zs.add(summary, SUMMARY)
    for m in items:
        zs.add(_lazy(store, m.key), m.path, size=m.size)
    return zs


def record_download(cdg_code: str, items: list[Member], *, actor: str, address: str | None) -> None:
    """One `archive_downloaded` event per kit in the ZIP (its journal shows who took its
    archived copies); the caller commits before serving the file."""
    kits: dict[int, Member] = {}
    for m in items:
        kits.setdefault(m.kit_id, m)
    for m in kits.values():
        record(
            "archive_downloaded",
            actor=actor,
            kit_id=m.kit_id,
            siret=m.siret,
            address=address,
            details={
                "cdg": cdg_code,
                "files": sum(1 for i in items if i.kit_id == m.kit_id),
            },
        )
