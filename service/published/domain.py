"""Which convention a CDG publishes, and its documents cached per convention version.

The documents are rendered once per version of the convention (a SHA-256 of the CDG's and the
convention's data and of the template set's files, `published.fingerprint`) and kept in the
document store under `published/<cdg>/<convention id>/<fingerprint>/`, with a manifest written
last: a manifest found means every file it names is there. A changed convention (rates, dates,
regime…) or template has another fingerprint, so its documents are rendered again on the next
request; older versions stay where they were, unreferenced.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import select

from service import labels
from service.errors import NotFound, Unavailable
from service.extensions import db
from service.formatting import file_stem
from service.kits.domain import convention_data, local_today
from service.kits.published import (
    FORMATS,
    MEDIA_TYPES,
    PUBLISHED_KINDS,
    TITLES,
    PublishedInput,
    fingerprint,
    render_published,
)
from service.kits.render import CdgData
from service.ratelimit import limiter
from service.reference.models import Cdg, Convention
from storage import ObjectNotFound, ObjectStore
from storage.base import sha256_hex


@dataclass(frozen=True)
class PublishedEntry:
    kind: str
    title: str
    format: str
    key: str
    size: int
    sha256: str

    @property
    def media_type(self) -> str:
        return MEDIA_TYPES[self.format]

    @property
    def format_label(self) -> str:
        return FORMAT_LABELS[self.format]

    def filename(self, reference: str) -> str:
        """`demande-de-souscription-de-la-collectivite-dsc-cdg81-prev-2025-2030.pdf`: what a
        person saves never carries a code."""
        return f"{file_stem(self.title)}-{file_stem(reference)}.{self.format}"


@dataclass(frozen=True)
class Publication:
    cdg: Cdg
    convention: Convention
    fingerprint: str
    published_on: date
    entries: tuple[PublishedEntry, ...]
    #: True when this call rendered the documents (False: read from the store)
    rendered: bool

    def entry(self, kind: str) -> PublishedEntry:
        for entry in self.entries:
            if entry.kind == kind:
                return entry
        raise NotFound("Document inconnu.", code="unknown_document")


FORMAT_LABELS = {"pdf": "PDF", "xlsx": "tableur XLSX", "csv": "CSV", "docx": "Word (DOCX)"}


def today() -> date:
    """Today in the readers' time zone."""
    return local_today()


def get_public_cdg(code: str) -> Cdg:
    cdg = db.session.scalar(select(Cdg).where(Cdg.code == code))
    if cdg is None:
        raise NotFound(f"CDG inconnu : {code}.", code="unknown_cdg")
    return cdg


def current_convention(cdg: Cdg, *, on: date) -> Convention:
    """The convention the CDG publishes on day `on`: the one in force that day (the latest
    started if periods overlap); failing that, the next one to start (a CDG publishes before
    its convention begins). None in force or to come: 404 `no_convention_in_force`."""
    conventions = db.session.scalars(
        select(Convention).where(Convention.cdg_id == cdg.id).order_by(Convention.id)
    ).all()
    in_force = [c for c in conventions if c.starts_on <= on <= c.ends_on]
    if in_force:
        return max(in_force, key=lambda c: (c.starts_on, c.id))
    upcoming = [c for c in conventions if c.starts_on > on]
    if upcoming:
        return min(upcoming, key=lambda c: (c.starts_on, c.id))
    raise NotFound(
        f"Le {cdg.name} n'a pas de convention de participation en vigueur.",
        code="no_convention_in_force",
    )


def published_input(cdg: Cdg, convention: Convention, *, on: date) -> PublishedInput:
    return PublishedInput(
        cdg=CdgData(cdg.code, cdg.name, cdg.email),
        convention=convention_data(convention),
        published_on=on,
        timezone=labels.zone_name(),
    )


def _prefix(cdg: Cdg, convention: Convention, version: str) -> str:
    return f"published/{cdg.code}/{convention.id}/{version}"


#: how long a renderer's marker lives if it never releases it (a rendering takes seconds)
RENDER_CLAIM_SECONDS = 120


class DocumentsBeingPrepared(Unavailable):
    """Another request is rendering this version of the documents: come back shortly."""

    code = "documents_being_prepared"
    message = "Les documents sont en cours de préparation : réessayez dans quelques secondes."
    retry_after = 5


def render_claim_name(prefix: str) -> str:
    """The marker one request holds while it renders the version stored under `prefix`."""
    return f"published-render/{prefix}"


def _read_manifest(store: ObjectStore, key: str) -> dict[str, Any] | None:
    try:
        return json.loads(store.get(key))
    except ObjectNotFound:
        return None


def publication(code: str, *, store: ObjectStore, on: date | None = None) -> Publication:
    """The CDG's current convention's documents, rendered unless this version is stored."""
    day = on or today()
    cdg = get_public_cdg(code)
    convention = current_convention(cdg, on=day)
    data = published_input(cdg, convention, on=day)
    version = fingerprint(data)
    prefix = _prefix(cdg, convention, version)
    manifest_key = f"{prefix}/manifest.json"
    manifest = _read_manifest(store, manifest_key)
    rendered = False
    if manifest is None:
        # one renderer per version, every process (the limiter's store): the others wait
        claim = render_claim_name(prefix)
        if not limiter().claim(claim, RENDER_CLAIM_SECONDS):
            raise DocumentsBeingPrepared()
        try:
            manifest = _read_manifest(store, manifest_key)  # made before our claim
            if manifest is None:
                manifest = _render_and_store(data, prefix=prefix, store=store)
                store.put(
                    manifest_key,
                    json.dumps(manifest, ensure_ascii=False).encode(),
                    content_type="application/json",
                )
                rendered = True
        finally:
            limiter().release(claim)
    entries = tuple(
        PublishedEntry(
            kind=item["kind"],
            title=TITLES[item["kind"]],
            format=FORMATS[item["kind"]],
            key=item["key"],
            size=item["size"],
            sha256=item["sha256"],
        )
        for item in manifest["files"]
        if item["kind"] in PUBLISHED_KINDS
    )
    return Publication(
        cdg=cdg,
        convention=convention,
        fingerprint=version,
        published_on=date.fromisoformat(manifest["published_on"]),
        entries=entries,
        rendered=rendered,
    )


def _render_and_store(data: PublishedInput, *, prefix: str, store: ObjectStore) -> dict[str, Any]:
    files = []
    for item in render_published(data):
        # the key names the bytes: two renderings of one version never overwrite each other
        key = f"{prefix}/{item.kind}-{_short_sha(item.content)}.{item.format}"
        info = store.put(
            key,
            item.content,
            content_type=item.media_type,
            metadata={"cdg": data.cdg.code, "kind": item.kind},
        )
        files.append(
            {"kind": item.kind, "key": key, "size": len(item.content), "sha256": info.sha256}
        )
    return {"published_on": data.published_on.isoformat(), "files": files}


def _short_sha(content: bytes) -> str:
    return sha256_hex(content)[:16]
