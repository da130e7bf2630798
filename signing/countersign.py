"""The insurer's countersignature: an incremental PAdES signature with a visible block.

The employer's signature stays valid: pyHanko appends a revision, never rewrites the file.
B-B by default; B-T when a time-stamping authority is configured (its failure is an error,
never a silent downgrade).
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pyhanko.pdf_utils.font.opentype import GlyphAccumulatorFactory
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.metadata.info import view_from_info_dict
from pyhanko.pdf_utils.metadata.model import PDF_PRODUCER, XmpStructure, XmpValue
from pyhanko.pdf_utils.metadata.xmp_xml import MetadataStream
from pyhanko.pdf_utils.text import TextBoxStyle
from pyhanko.sign import fields, signers, timestamps
from pyhanko.sign.fields import SigSeedSubFilter
from pyhanko.stamp import TextStampStyle

from signing.errors import CountersignFailed, KeyUnavailable, TimestampUnavailable

#: the insurer's empty signature field that the contractual pieces carry in their cell
INSURER_FIELD = "SignatureAssureur"
#: the employer's one, signed by the employers' tools
EMPLOYER_FIELD = "SignatureCollectivite"
#: embedded in the stamp, so that the countersigned copy keeps every font embedded (PDF/A)
STAMP_FONT = Path(__file__).resolve().parent / "fonts" / "DejaVuSans-latin-1000upem.ttf"


@dataclass(frozen=True)
class SigningKey:
    signer: Any  # pyhanko SimpleSigner
    fingerprint: str  # SHA-256 of the certificate (DER)
    subject: str
    development: bool


def load_pkcs12(path: str | Path, passphrase: str | None) -> SigningKey:
    try:
        signer = signers.SimpleSigner.load_pkcs12(
            str(path), passphrase=passphrase.encode() if passphrase else None
        )
    except Exception as exc:
        raise KeyUnavailable(f"cannot load PKCS#12 {path}: {type(exc).__name__}") from exc
    if signer is None or signer.signing_cert is None:
        raise KeyUnavailable(f"cannot load PKCS#12 {path}")
    cert = signer.signing_cert
    subject = cert.subject.human_friendly
    return SigningKey(
        signer=signer,
        fingerprint=hashlib.sha256(cert.dump()).hexdigest(),
        subject=subject,
        development="DÉVELOPPEMENT" in subject.upper() or "DEVELOPPEMENT" in subject.upper(),
    )


@dataclass(frozen=True)
class SignatureBox:
    """Where the visible block goes: page index (negative counts from the end) and rectangle."""

    page: int
    box: tuple[float, float, float, float]


DEFAULT_BOX = SignatureBox(page=-1, box=(300.0, 70.0, 560.0, 135.0))

#: the zone of the stamp's time unless the service says otherwise (its `TIMEZONE`)
DEFAULT_ZONE = "Europe/Paris"
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


def stamp_moment(moment: datetime, zone: str = DEFAULT_ZONE) -> str:
    """`le 22 novembre 2026 à 16 h 46 (heure de Paris)`: the stamp's time as a person reads it.

    Computed here rather than by pyHanko's `%(ts)s`, which formats the process's local time."""
    try:
        tz = ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise CountersignFailed(f"unknown time zone {zone!r}") from exc
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    local = aware.astimezone(tz)
    day = "1er" if local.day == 1 else str(local.day)
    where = "heure de Paris" if zone == "Europe/Paris" else f"heure locale, {zone}"
    return (
        f"le {day} {MONTHS[local.month - 1]} {local.year} à {local.hour} h {local.minute:02d} "
        f"({where})"
    )


class _TimedSigner(signers.PdfSigner):
    """A `PdfSigner` whose signing time is the one given (pyHanko takes the clock's): the time
    written in the visible block is then the signature's /M and CMS signing time."""

    def __init__(self, *args: Any, signing_time: datetime, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._signing_time = signing_time

    def init_signing_session(self, *args: Any, **kwargs: Any) -> Any:
        session = super().init_signing_session(*args, **kwargs)
        session.system_time = self._signing_time
        return session


def countersign(
    data: bytes,
    key: SigningKey,
    *,
    field_name: str = "Contreseing_assureur",
    signer_label: str,
    reason: str = "Contreseing de l'assureur",
    location: str | None = None,
    place: SignatureBox = DEFAULT_BOX,
    tsa_url: str | None = None,
    time_zone: str = DEFAULT_ZONE,
    signing_time: datetime | None = None,
) -> bytes:
    """Append the insurer's PAdES signature to an already signed PDF.

    The visible block reads « Contresigné pour <signer_label> le 22 novembre 2026 à 16 h 46
    (heure de Paris) »: `signing_time` (now by default) in `time_zone` (the service's
    `TIMEZONE`), the very time the signature records.

    The document's empty `SignatureAssureur` field is filled when there is one (its cell on the
    piece); otherwise a new field `field_name` is added at `place`, invisible when the employer
    certified the document (DocMDP), since a certified document allows new signatures but no new
    annotations. The document information dictionary and the XMP metadata are kept in agreement.
    """
    timestamper = timestamps.HTTPTimeStamper(tsa_url, timeout=10) if tsa_url else None
    moment = (signing_time or datetime.now(UTC)).replace(microsecond=0)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    text = f"Contresigné pour {signer_label}\n{stamp_moment(moment, time_zone)}"
    stamp = TextStampStyle(
        stamp_text=text.replace("%", "%%"),  # pyHanko interpolates `%(…)s` parameters
        text_box_style=TextBoxStyle(font=GlyphAccumulatorFactory(str(STAMP_FONT)), font_size=8),
        border_width=1,
    )
    try:
        writer = _MetadataKeepingWriter(io.BytesIO(data), strict=False)
        _align_metadata(writer, moment)
        empty = {name for name, _, _ in fields.enumerate_sig_fields(writer, filled_status=False)}
        new_field: Any = None
        if INSURER_FIELD in empty:
            field_name = INSURER_FIELD
        else:
            count = int(writer.root["/Pages"]["/Count"])
            page = place.page if place.page >= 0 else count + place.page
            certified = "/DocMDP" in (_resolved(writer.root, "/Perms") or {})
            new_field = fields.SigFieldSpec(
                sig_field_name=field_name, on_page=page, box=None if certified else place.box
            )
        meta = signers.PdfSignatureMetadata(
            field_name=field_name,
            md_algorithm="sha256",
            subfilter=SigSeedSubFilter.PADES,
            reason=reason,
            location=location,
            name=signer_label,
            use_pades_lta=False,
        )
        pdf_signer = _TimedSigner(
            meta,
            signer=key.signer,
            timestamper=timestamper,
            stamp_style=stamp,
            new_field_spec=new_field,
            signing_time=moment,
        )
        out = io.BytesIO()
        pdf_signer.sign_pdf(writer, output=out)
        return out.getvalue()
    except Exception as exc:
        if tsa_url and _is_timestamp_failure(exc):
            raise TimestampUnavailable(f"time-stamping authority failed: {exc}") from exc
        raise CountersignFailed(f"{type(exc).__name__}: {exc}") from exc


class _MetadataKeepingWriter(IncrementalPdfFileWriter):
    """pyHanko appends its name to the information dictionary's producer but writes its name
    alone as the XMP one; PDF/A wants both to say the same: the XMP gets the dictionary's."""

    def _update_meta(self) -> None:
        super()._update_meta()
        info = self._info.get_object() if self._info is not None else None
        xmp = _resolved(self.root, "/Metadata")
        if info is None or "/Producer" not in info or not isinstance(xmp, MetadataStream):
            return
        merged = {name: value for root in xmp.xmp for name, value in root}
        merged[PDF_PRODUCER] = XmpValue(str(info["/Producer"]))
        xmp._xmp = [XmpStructure(merged)]
        xmp._reserialise()
        xmp._encoded_data = None


def _resolved(dictionary: Any, key: str) -> Any:
    """The value under `key`, references followed (pyHanko's `get` does not follow them)."""
    try:
        return dictionary[key]
    except KeyError:
        return None


def _align_metadata(writer: IncrementalPdfFileWriter, moment: datetime) -> None:
    """Carry the information dictionary's entries into the XMP (pyHanko writes both from
    `document_meta`), with one modification time for both."""
    try:
        current = view_from_info_dict(writer.trailer["/Info"], strict=False)
    except KeyError:
        current = None
    meta = writer.document_meta
    if current is not None:
        meta.title = current.title
        meta.author = current.author
        meta.subject = current.subject
        meta.creator = current.creator
        meta.created = current.created
        meta.keywords = list(current.keywords)
    meta.last_modified = moment.astimezone(UTC)


def _is_timestamp_failure(exc: BaseException) -> bool:
    text = f"{type(exc).__name__} {exc}".lower()
    return any(word in text for word in ("timestamp", "tsa", "connection", "timeout"))
