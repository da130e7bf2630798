"""Verifying a signed return against the exact PDF the service issued.

Order of checks (each refusal raises `Refused` with its code):
1. structure: a PDF (`not_a_pdf`), parseable (`malformed_pdf`), not encrypted (`encrypted_pdf`),
   without JavaScript, launch actions, embedded files or XFA anywhere in the object graph, direct
   objects nested in dictionaries and arrays included (`active_content`; the walk is bounded:
   `malformed_pdf` beyond `MAX_NODES`); fonts without a font program are noted, since the
   countersigned copy then cannot be PDF/A (`pdfa_preserved`, `pdfa_reason` of the verdict);
2. digital signatures (pyHanko): the revision covered by the first signature is byte-for-byte
   the issued PDF (`not_the_issued_document`, unless the text proves it is our document rewritten
   by the signing tool: then review); every signature intact and valid (`signature_invalid`),
   covering its whole revision; later changes limited to signatures, form filling and timestamps
   (`modified_after_signature`); a certification forbidding any change (DocMDP P=1), which
   would block the countersignature, is refused (`certified_no_changes`); trust decides
   `accepted` or `pending_review`;
3. no digital signature (a scan): same page count (`page_count_mismatch`), then review.

pyHanko's `intact and valid` alone accepts known attacks, hence the coverage, modification-level
and byte-prefix checks. Every exception a PDF library raises on hostile input fails closed.
"""

from __future__ import annotations

import difflib
import hashlib
import io
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC
from typing import Any

from asn1crypto import x509 as asn1_x509
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.diff_analysis import DEFAULT_DIFF_POLICY, ModificationLevel
from pyhanko.sign.fields import MDPPerm
from pyhanko.sign.validation import validate_pdf_signature, validate_pdf_timestamp
from pyhanko.sign.validation.status import SignatureCoverageLevel
from pyhanko_certvalidator import ValidationContext
from pypdf import PdfReader
from pypdf.generic import ArrayObject, DictionaryObject, IndirectObject

from signing.errors import Refused

log = logging.getLogger(__name__)

ACTIVE_KEYS = {
    "/JS",
    "/JavaScript",
    "/EmbeddedFiles",
    "/XFA",
    "/RichMedia",
    "/Launch",
    "/ImportData",
    "/EmbeddedFile",
}
ACTIVE_ACTIONS = {
    "/JavaScript",
    "/Launch",
    "/ImportData",
    "/RichMediaExecute",
    "/SubmitForm",
    "/GoToE",
}
MAX_OBJECTS = 200_000
#: dictionaries and arrays visited, all objects together, before giving up on a file
MAX_NODES = 2_000_000
FONT_FILES = {"/FontFile", "/FontFile2", "/FontFile3"}
SIMPLE_FONTS = {"/Type1", "/TrueType", "/MMType1"}
PDFA_NAMESPACE = b"http://www.aiim.org/pdfa/ns/id/"
_ENCRYPT_KEY = re.compile(rb"/Encrypt(?![A-Za-z])")
#: a file rewritten by a signing tool keeps its text; below this, it is another document
MIN_TEXT_SIMILARITY = 0.97


@dataclass(frozen=True)
class Signer:
    name: str
    organisation: str | None
    serial: str
    issuer: str
    fingerprint: str
    signing_time: str | None
    level: str
    kind: str  # "signature" or "timestamp"
    trusted: bool
    problems: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "organisation": self.organisation,
            "serial": self.serial,
            "issuer": self.issuer,
            "fingerprint": self.fingerprint,
            "signing_time": self.signing_time,
            "level": self.level,
            "kind": self.kind,
            "trusted": self.trusted,
            "problems": list(self.problems),
        }


@dataclass(frozen=True)
class Verdict:
    status: str  # "accepted" or "pending_review"
    signed: bool
    pages: int
    signers: tuple[Signer, ...] = ()
    reasons: tuple[str, ...] = ()
    differences: tuple[str, ...] = ()
    #: whether the countersigned copy can still be PDF/A (every font embedded, still identified)
    pdfa_preserved: bool = True
    pdfa_reason: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "signed": self.signed,
            "pages": self.pages,
            "signers": [s.to_json() for s in self.signers],
            "reasons": list(self.reasons),
            "differences": list(self.differences),
            "pdfa_preserved": self.pdfa_preserved,
            "pdfa_reason": self.pdfa_reason,
        }


@dataclass(frozen=True)
class TrustSettings:
    """Trust anchors (DER certificates) and the certificates a return must not be signed with."""

    roots: tuple[bytes, ...] = ()
    forbidden_fingerprints: frozenset[str] = field(default_factory=frozenset)
    allow_fetching: bool = False


# -- 1. structure --------------------------------------------------------------------------


def _open(data: bytes) -> PdfReader:
    head = data[:1024]
    if b"%PDF-" not in head:
        raise Refused("not_a_pdf", "Le fichier envoyé n'est pas un PDF.")
    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        encrypted = reader.is_encrypted
    except Exception as exc:
        if _ENCRYPT_KEY.search(data):  # a broken file that still says it is encrypted
            encrypted = True
        else:
            raise Refused("malformed_pdf", "Ce PDF est endommagé ou illisible.") from exc
    if encrypted:
        raise Refused(
            "encrypted_pdf",
            "Ce PDF est chiffré ou protégé par mot de passe : envoyez une version non protégée.",
        )
    return reader


def _objects(reader: PdfReader) -> Iterator[Any]:
    ids = {(num, 0) for num in reader.xref_objStm}
    for generation, entries in reader.xref.items():
        ids.update((num, generation) for num in entries)
    if len(ids) > MAX_OBJECTS:
        raise Refused("malformed_pdf", "Ce PDF contient un nombre d'objets déraisonnable.")
    for num, generation in sorted(ids):
        yield reader.get_object(IndirectObject(num, generation, reader))
    yield reader.trailer


def _walk(reader: PdfReader, max_nodes: int) -> Iterator[DictionaryObject]:
    """Every dictionary of the file (streams' included), however deeply it is nested as a
    direct object inside other dictionaries and arrays. References are not followed: their
    targets are visited as objects of their own. The total work is bounded."""
    visited = 0
    for top in _objects(reader):
        stack = [top]
        while stack:
            node = stack.pop()
            visited += 1
            if visited > max_nodes:
                raise Refused(
                    "malformed_pdf", "Ce PDF est d'une complexité déraisonnable : il est refusé."
                )
            if isinstance(node, DictionaryObject):  # streams are dictionaries too
                yield node
                stack.extend(node.values())
            elif isinstance(node, ArrayObject):
                stack.extend(node)


def _active_keys(obj: DictionaryObject) -> list[str]:
    keys = set(obj.keys())
    if keys & ACTIVE_KEYS:
        return sorted(keys & ACTIVE_KEYS)
    action = obj.get("/S")
    if isinstance(action, IndirectObject):
        action = action.get_object()
    if action in ACTIVE_ACTIONS:
        return [str(action)]
    return []


def _unembedded_font(obj: DictionaryObject) -> str | None:
    """The name of the font this dictionary declares without embedding it, if it does."""
    kind = obj.get("/Type")
    if kind == "/FontDescriptor":
        if not FONT_FILES & set(obj.keys()):
            return str(obj.get("/FontName", "?")).lstrip("/")
        return None
    if obj.get("/Subtype") in SIMPLE_FONTS and "/BaseFont" in obj and "/FontDescriptor" not in obj:
        return str(obj.get("/BaseFont")).lstrip("/")  # a standard 14 font, never embedded
    return None


@dataclass(frozen=True)
class Structure:
    pages: int
    unembedded_fonts: tuple[str, ...]
    pdfa_identified: bool
    pdf2: bool = False  # the signing tool declared PDF 2.0 (e.g. pyHanko with an EC key)


def _scan(reader: PdfReader, max_nodes: int) -> tuple[str, ...]:
    """Refuse active content anywhere; return the fonts that are not embedded."""
    fonts: set[str] = set()
    for obj in _walk(reader, max_nodes):
        found = _active_keys(obj)
        if found:
            raise Refused(
                "active_content",
                "Ce PDF contient du contenu actif (JavaScript, action de lancement, fichier "
                "joint ou formulaire XFA) : il est refusé par sécurité.",
                details=found,
            )
        font = _unembedded_font(obj)
        if font:
            fonts.add(font)
    return tuple(sorted(fonts))


def _declares_pdf2(reader: PdfReader) -> bool:
    """PDF/A-2 rests on PDF 1.7: a file whose header or catalog says 2.0 is no longer PDF/A-2."""
    version = str(reader.trailer["/Root"].get("/Version") or "").lstrip("/")
    header = str(reader.pdf_header or "").removeprefix("%PDF-")
    return any(v[:1].isdigit() and v.split(".")[0] >= "2" for v in (version, header))


def _pdfa_identified(reader: PdfReader) -> bool:
    metadata = reader.trailer["/Root"].get("/Metadata")
    if metadata is None:
        return False
    try:
        xmp = metadata.get_object().get_data()
    except Exception:
        return False
    return PDFA_NAMESPACE in xmp


def _page_texts(reader: PdfReader) -> list[str]:
    return [" ".join((page.extract_text() or "").split()) for page in reader.pages]


def inspect_structure(data: bytes, *, max_nodes: int = MAX_NODES) -> tuple[PdfReader, Structure]:
    reader = _open(data)
    try:
        fonts = _scan(reader, max_nodes)
        pages = len(reader.pages)
        pdfa = _pdfa_identified(reader)
        pdf2 = _declares_pdf2(reader)
    except Refused:
        raise
    except Exception as exc:
        raise Refused("malformed_pdf", "Ce PDF est endommagé ou illisible.") from exc
    if pages == 0:
        raise Refused("malformed_pdf", "Ce PDF ne contient aucune page.")
    return reader, Structure(pages=pages, unembedded_fonts=fonts, pdfa_identified=pdfa, pdf2=pdf2)


def _pdfa_reason(structure: Structure) -> str | None:
    """Why the countersigned copy cannot be PDF/A, in French; None when nothing says so."""
    if structure.unembedded_fonts:
        names = ", ".join(structure.unembedded_fonts[:5])
        return (
            f"le document signé utilise une police non incorporée ({names}), probablement dans "
            "l'apparence de la signature : l'exemplaire contresigné ne sera pas conforme au "
            "format d'archivage PDF/A"
        )
    if structure.pdf2:
        return (
            "l'outil de signature a déclaré le document en PDF 2.0 (signature à clé ECDSA, "
            "ISO 32002) : l'exemplaire contresigné ne sera pas conforme au format d'archivage "
            "PDF/A-2, qui repose sur PDF 1.7"
        )
    if not structure.pdfa_identified:
        return (
            "le document signé n'est plus identifié comme PDF/A : l'exemplaire contresigné ne "
            "sera pas conforme au format d'archivage PDF/A"
        )
    return None


# -- 2. signatures -------------------------------------------------------------------------


def _name_part(name: asn1_x509.Name, attr: str) -> str | None:
    try:
        value = name.native.get(attr)
    except Exception:
        return None
    if isinstance(value, list):
        value = ", ".join(str(v) for v in value)
    return str(value) if value else None


def _has_revocation_pointers(cert: asn1_x509.Certificate) -> bool:
    try:
        return bool(cert.crl_distribution_points or cert.ocsp_urls)
    except Exception:
        return False


_TRUST_REASONS = {
    "NO_CERTIFICATE_CHAIN_FOUND": "certificat non reconnu par nos autorités de confiance",
    "OUT_OF_BOUNDS_NO_POE": "certificat expiré, sans horodatage prouvant la date de signature",
    "EXPIRED": "certificat expiré",
    "NOT_YET_VALID": "certificat pas encore valide",
    "REVOKED_NO_POE": "certificat révoqué",
    "REVOKED_CA_NO_POE": "autorité de certification révoquée",
    "TRY_LATER": "statut de révocation inconnu",
    "REVOCATION_OUT_OF_BOUNDS_NO_POE": "statut de révocation inconnu",
}


def _validation_context(trust: TrustSettings) -> Any:
    roots = [asn1_x509.Certificate.load(der) for der in trust.roots]
    return ValidationContext(
        trust_roots=roots,
        allow_fetching=trust.allow_fetching,
        revocation_mode="hard-fail" if trust.allow_fetching else "soft-fail",
    )


def _level(status: Any, kind: str) -> str:
    if kind == "timestamp":
        return "document-timestamp"
    return "B-T" if getattr(status, "timestamp_validity", None) is not None else "B-B"


def _check_signature(emb: Any, trust: TrustSettings) -> Signer:
    kind = "timestamp" if emb.sig_object_type == "/DocTimeStamp" else "signature"
    vc = _validation_context(trust)
    try:
        if kind == "timestamp":
            status = validate_pdf_timestamp(emb, validation_context=vc)
        else:
            status = validate_pdf_signature(emb, signer_validation_context=vc)
    except Refused:
        raise
    except Exception as exc:
        log.info("signature validation raised %r", exc)
        raise Refused(
            "signature_invalid", "Une signature de ce PDF est illisible ou invalide."
        ) from exc
    if not (status.intact and status.valid):
        raise Refused(
            "signature_invalid",
            "Une signature de ce PDF n'est pas intègre : le document a été altéré après signature "
            "ou la signature est fausse.",
        )
    if status.coverage == SignatureCoverageLevel.CONTIGUOUS_BLOCK_FROM_START:
        # the signed bytes are a prefix of the file but no longer a whole revision: the file
        # was rewritten after signing
        raise Refused(
            "modified_after_signature",
            "Le document a été modifié après sa signature : la signature ne couvre plus une "
            "révision complète.",
        )
    if status.coverage not in (
        SignatureCoverageLevel.ENTIRE_FILE,
        SignatureCoverageLevel.ENTIRE_REVISION,
    ):
        raise Refused(
            "signature_invalid", "Une signature ne couvre pas l'intégralité du document signé."
        )
    level = status.modification_level
    if level is None or level > ModificationLevel.FORM_FILLING or status.docmdp_ok is False:
        raise Refused(
            "modified_after_signature",
            "Le document a été modifié après sa signature (au-delà d'autres signatures, du "
            "remplissage de champs ou d'horodatages).",
        )
    cert = status.signing_cert
    fingerprint = hashlib.sha256(cert.dump()).hexdigest()
    if fingerprint in trust.forbidden_fingerprints:
        raise Refused(
            "wrong_signer",
            "Ce document est signé avec le certificat de l'assureur, pas par la collectivité.",
        )
    problems: list[str] = []
    trusted = bool(status.trusted)
    if not trusted:
        indic = getattr(status.trust_problem_indic, "name", "") or ""
        problems.append(_TRUST_REASONS.get(indic, "chaîne de confiance non vérifiée"))
    elif not trust.allow_fetching and _has_revocation_pointers(cert):
        trusted = False
        problems.append("statut de révocation inconnu (vérification en ligne désactivée)")
    signing_time = getattr(status, "signer_reported_dt", None) or getattr(status, "timestamp", None)
    return Signer(
        name=_name_part(cert.subject, "common_name") or cert.subject.human_friendly,
        organisation=_name_part(cert.subject, "organization_name"),
        serial=format(cert.serial_number, "x"),
        issuer=cert.issuer.human_friendly,
        fingerprint=fingerprint,
        signing_time=signing_time.astimezone(UTC).isoformat() if signing_time else None,
        level=_level(status, kind),
        kind=kind,
        trusted=trusted,
        problems=tuple(problems),
    )


def _text_differences(uploaded: PdfReader, issued: bytes, marker: str) -> list[str]:
    """Line differences between the uploaded and the issued document's text, page by page."""
    theirs = _page_texts(uploaded)
    ours = _page_texts(PdfReader(io.BytesIO(issued)))
    if len(theirs) != len(ours) or not all(marker in page for page in theirs):
        raise Refused(
            "not_the_issued_document",
            "Ce document signé n'est pas celui qui vous a été remis dans le kit.",
        )
    differences: list[str] = []
    for number, (a, b) in enumerate(zip(ours, theirs, strict=True), start=1):
        if a == b:
            continue
        matcher = difflib.SequenceMatcher(None, a.split(), b.split(), autojunk=False)
        if matcher.ratio() < MIN_TEXT_SIMILARITY:
            raise Refused(
                "not_the_issued_document",
                "Ce document signé n'est pas celui qui vous a été remis dans le kit.",
                details=[f"page {number} : texte trop différent du document émis"],
            )
        for tag, i1, i2, j1, j2 in matcher.get_opcodes():
            if tag == "equal":
                continue
            before = " ".join(a.split()[i1:i2])[:200]
            after = " ".join(b.split()[j1:j2])[:200]
            differences.append(f"page {number} : « {before} » → « {after} »")
            if len(differences) >= 50:
                return differences
    return differences


def _check_revisions_before_signing(hanko: Any, issued_revision: int) -> None:
    """Revisions between the issued document and the first signature (signing tools add the
    signature field there) may only add fields or fill them; anything else means the employer
    signed an altered document."""
    try:
        result = DEFAULT_DIFF_POLICY.review_file(hanko, issued_revision)
        level = getattr(result, "modification_level", None)
    except Exception:
        level = None
    if level is None or level > ModificationLevel.FORM_FILLING:
        raise Refused(
            "not_the_issued_document",
            "Le document a été modifié avant d'être signé : ce n'est plus celui du kit.",
        )


def _check_certification(embedded: list[Any]) -> None:
    """A certification signature forbidding every change (DocMDP P=1) leaves no room for the
    insurer's countersignature: refused now rather than blocked forever at countersigning."""
    for emb in embedded:
        try:
            level = emb.docmdp_level
        except Exception as exc:
            raise Refused(
                "signature_invalid", "Une signature de ce PDF est illisible ou invalide."
            ) from exc
        if level == MDPPerm.NO_CHANGES:
            raise Refused(
                "certified_no_changes",
                "Ce document a été certifié par son signataire avec l'option « aucune "
                "modification autorisée » : l'assureur ne pourrait plus y apposer son "
                "contreseing. Signez-le de nouveau sans certification, ou avec une "
                "certification qui autorise le remplissage de formulaires et les signatures.",
            )


def _revisions(data: bytes) -> int:
    return PdfFileReader(io.BytesIO(data), strict=False).xrefs.total_revisions


def verify_return(data: bytes, issued: bytes, *, marker: str, trust: TrustSettings) -> Verdict:
    """Check an uploaded return against the issued PDF; raise `Refused` or return a verdict.

    `marker` is a string every page of the issued document carries (its kit reference).
    """
    reader, structure = inspect_structure(data)
    pages = structure.pages
    pdfa_reason = _pdfa_reason(structure)
    try:
        hanko = PdfFileReader(io.BytesIO(data), strict=False)
        embedded = sorted(hanko.embedded_signatures, key=lambda s: s.signed_revision)
    except Refused:
        raise
    except Exception as exc:
        raise Refused("malformed_pdf", "Ce PDF est endommagé ou illisible.") from exc

    if not embedded:
        if data == issued:
            raise Refused(
                "not_signed", "Ce document n'est pas signé : c'est l'exemplaire vierge du kit."
            )
        issued_pages = len(PdfReader(io.BytesIO(issued)).pages)
        if pages != issued_pages:
            raise Refused(
                "page_count_mismatch",
                f"Le document compte {pages} page(s) au lieu de {issued_pages} : "
                "renvoyez toutes les pages signées.",
            )
        return Verdict(
            status="pending_review",
            signed=False,
            pages=pages,
            reasons=(
                "document sans signature électronique (signé à la main et numérisé) : "
                "vérification visuelle requise",
            ),
            pdfa_preserved=pdfa_reason is None,
            pdfa_reason=pdfa_reason,
        )

    reasons: list[str] = []
    differences: list[str] = []
    first = embedded[0]
    issued_revisions = _revisions(issued)
    byte_prefix = data.startswith(issued) and first.signed_revision >= issued_revisions
    if not byte_prefix:
        try:
            differences = _text_differences(reader, issued, marker)
        except Refused:
            raise
        except Exception as exc:
            raise Refused("malformed_pdf", "Ce PDF est endommagé ou illisible.") from exc
        reasons.append(
            "l'outil de signature a réécrit le fichier avant de le signer : les octets diffèrent "
            "du document émis" + (", textes identiques" if not differences else "")
        )

    signers = [_check_signature(emb, trust) for emb in embedded]
    _check_certification(embedded)
    if byte_prefix and first.signed_revision > issued_revisions:
        _check_revisions_before_signing(hanko, issued_revisions - 1)
    for signer in signers:
        for problem in signer.problems:
            reasons.append(f"{signer.name} : {problem}")
    regular = [s for s in signers if s.kind == "signature"]
    if not regular:
        raise Refused(
            "signature_invalid", "Ce document ne porte qu'un horodatage, pas de signature."
        )
    accepted = byte_prefix and all(s.trusted for s in regular)
    return Verdict(
        status="accepted" if accepted else "pending_review",
        signed=True,
        pages=pages,
        signers=tuple(signers),
        reasons=tuple(reasons),
        differences=tuple(differences),
        pdfa_preserved=pdfa_reason is None,
        pdfa_reason=pdfa_reason,
    )
