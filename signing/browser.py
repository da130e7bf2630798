"""Signing in the browser: the service's signing CA and the collectivité's PAdES signature.

For each signature made in the browser, the CA issues a short-lived certificate naming the
signatory (CN, title) and the collectivité (O, with its SIRET as organisation identifier); its
key is generated here, used once and never written anywhere. The exact issued PDF is then signed
in the collectivité's empty field (`SignatureCollectivite`), PAdES B-B (B-T with a TSA), with a
visible block showing the drawn signature (a PNG checked with Pillow) or the typed name, and
« Signé électroniquement par … le … (heure de Paris) ». PDF/A is kept as the countersignature
keeps it (RSA keys, embedded font, agreeing metadata).

A plain library: it knows nothing of Flask or of the service.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import io
import os
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from asn1crypto import keys as asn1_keys
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID
from PIL import Image, ImageDraw, ImageFont, UnidentifiedImageError
from pyhanko.pdf_utils import images
from pyhanko.pdf_utils.font.opentype import GlyphAccumulatorFactory
from pyhanko.pdf_utils.layout import AxisAlignment, InnerScaling, Margins, SimpleBoxLayoutRule
from pyhanko.pdf_utils.text import TextBoxStyle
from pyhanko.sign import fields, signers, timestamps
from pyhanko.sign.fields import SigSeedSubFilter
from pyhanko.stamp import TextStampStyle
from pyhanko_certvalidator.registry import SimpleCertificateStore

from signing.countersign import (
    DEFAULT_ZONE,
    EMPLOYER_FIELD,
    STAMP_FONT,
    _align_metadata,
    _is_timestamp_failure,
    _MetadataKeepingWriter,
    _TimedSigner,
    stamp_moment,
)
from signing.errors import (
    CountersignFailed,
    KeyUnavailable,
    Refused,
    SigningError,
    TimestampUnavailable,
)

DEV_LABEL = "DÉVELOPPEMENT – NE PAS UTILISER EN PRODUCTION"
#: a browser signature's certificate lives this long: it is used at once, never again
LEAF_VALIDITY = timedelta(hours=24)
#: the drawn signature: a PNG of at most this many bytes and pixels
MAX_DRAWING_BYTES = 300 * 1024
MIN_DRAWING_SIZE = (40, 20)
MAX_DRAWING_SIZE = (2400, 1200)
MAX_TYPED = 80
#: the typed name is drawn with it (Pillow renders the 1000-unit stamp font's hinting badly)
TYPED_FONT = Path(__file__).resolve().parent / "fonts" / "DejaVuSans-Oblique-latin.ttf"
PNG_DATA_URL = "data:image/png;base64,"


class SignatureRefused(Refused):
    """The signature given (drawing or typed name) is refused: `code`, French `message`."""


class BrowserSigningFailed(SigningError):
    """The browser signature could not be made (the issued PDF changed, pyHanko failed…)."""


# -- the CA -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SigningCA:
    key: rsa.RSAPrivateKey
    cert: x509.Certificate
    chain: tuple[x509.Certificate, ...]  # intermediates above `cert`, up to the root

    @property
    def der(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.DER)

    @property
    def root_der(self) -> bytes:
        """The trust anchor: the chain's last certificate, or the CA itself."""
        top = self.chain[-1] if self.chain else self.cert
        return top.public_bytes(serialization.Encoding.DER)

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(self.der).hexdigest()


def load_ca(path: str | Path, passphrase: str | None) -> SigningCA:
    """The CA (its key, its certificate, the certificates above it) from a PKCS#12."""
    try:
        key, cert, extra = pkcs12.load_key_and_certificates(
            Path(path).read_bytes(), passphrase.encode() if passphrase else None
        )
    except (OSError, ValueError) as exc:
        raise KeyUnavailable(f"cannot load the signing CA {path}: {type(exc).__name__}") from exc
    if key is None or cert is None or not isinstance(key, rsa.RSAPrivateKey):
        raise KeyUnavailable(f"{path}: an RSA key and its CA certificate are needed")
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        constraints = None
    if constraints is None or not constraints.ca:
        raise KeyUnavailable(f"{path}: the certificate is not a CA (basicConstraints)")
    return SigningCA(key=key, cert=cert, chain=tuple(extra or ()))


def create_dev_ca(path: Path, *, years: int = 10) -> Path:
    """Write a development CA (PKCS#12, no passphrase), clearly labelled; keep an existing one."""
    if path.exists():
        return path
    now = datetime.now(UTC) - timedelta(minutes=5)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "FR"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Service des kits PSC prévoyance"),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, DEV_LABEL),
            x509.NameAttribute(NameOID.COMMON_NAME, "AC de signature en ligne (DÉVELOPPEMENT)"),
        ]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=365 * years))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .sign(key, hashes.SHA256())
    )
    blob = pkcs12.serialize_key_and_certificates(
        b"psc-browser-ca", key, cert, None, serialization.NoEncryption()
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".browser-ca-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(blob)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600)
        with contextlib.suppress(FileExistsError):  # a concurrent creator may win
            os.link(tmp, path)
    finally:
        os.unlink(tmp)
    return path


@dataclass(frozen=True)
class Signatory:
    name: str
    title: str
    email: str
    organisation: str  # the collectivité's name
    siret: str


def issue_leaf(
    ca: SigningCA, who: Signatory, *, now: datetime | None = None
) -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    """A fresh key and its certificate for one signature (never stored)."""
    start = (now or datetime.now(UTC)) - timedelta(minutes=5)
    # RSA: an EC key would mark the signed copy PDF 2.0, out of PDF/A-2 (see signing/devcert.py)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "FR"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, who.organisation[:64]),
            x509.NameAttribute(NameOID.ORGANIZATION_IDENTIFIER, f"SIRET {who.siret}"),
            x509.NameAttribute(NameOID.TITLE, who.title[:64]),
            x509.NameAttribute(NameOID.COMMON_NAME, who.name[:64]),
        ]
    )
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + LEAF_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            # digitalSignature and nonRepudiation (contentCommitment)
            x509.KeyUsage(True, True, False, False, False, False, False, False, False),
            critical=True,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), False
        )
    )
    if who.email:
        with contextlib.suppress(ValueError):
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.RFC822Name(who.email)]), critical=False
            )
    return key, builder.sign(ca.key, hashes.SHA256())


# -- the signature given in the browser -------------------------------------------------------


def check_drawing(data_url: str) -> Image.Image:
    """A drawn signature: a PNG data URL, decoded and checked with Pillow (size, dimensions,
    something drawn). Returns the image cropped to the strokes, in RGBA."""
    if not isinstance(data_url, str) or not data_url.startswith(PNG_DATA_URL):
        raise SignatureRefused(
            "drawing_invalid", "Le dessin de la signature doit être une image PNG."
        )
    encoded = data_url[len(PNG_DATA_URL) :]
    if len(encoded) > MAX_DRAWING_BYTES * 4 // 3 + 4:
        raise SignatureRefused("drawing_invalid", "Le dessin de la signature est trop lourd.")
    try:
        raw = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise SignatureRefused(
            "drawing_invalid", "Le dessin de la signature est illisible."
        ) from None
    if not raw.startswith(b"\x89PNG\r\n\x1a\n"):
        raise SignatureRefused(
            "drawing_invalid", "Le dessin de la signature doit être une image PNG."
        )
    try:
        with Image.open(io.BytesIO(raw)) as probe:
            if probe.format != "PNG":
                raise SignatureRefused(
                    "drawing_invalid", "Le dessin de la signature doit être une image PNG."
                )
            width, height = probe.size
            if not (
                MIN_DRAWING_SIZE[0] <= width <= MAX_DRAWING_SIZE[0]
                and MIN_DRAWING_SIZE[1] <= height <= MAX_DRAWING_SIZE[1]
            ):
                raise SignatureRefused(
                    "drawing_invalid",
                    "Le dessin de la signature n'a pas des dimensions acceptables.",
                )
            probe.verify()
        with Image.open(io.BytesIO(raw)) as image:
            image.load()
            rgba = image.convert("RGBA")
    except SignatureRefused:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        raise SignatureRefused(
            "drawing_invalid", "Le dessin de la signature est une image PNG illisible."
        ) from None
    # the strokes: opaque and not white (a canvas may be transparent or filled with white)
    alpha = rgba.getchannel("A").point(lambda a: 255 if a > 32 else 0)
    dark = rgba.convert("L").point(lambda v: 255 if v < 200 else 0)
    strokes = Image.composite(dark, Image.new("L", rgba.size, 0), alpha)
    box = strokes.getbbox()
    if box is None:
        raise SignatureRefused("drawing_empty", "Dessinez votre signature avant de confirmer.")
    pad = 4
    box = (
        max(box[0] - pad, 0),
        max(box[1] - pad, 0),
        min(box[2] + pad, rgba.width),
        min(box[3] + pad, rgba.height),
    )
    # flatten on white: the appearance is then opaque RGB, nothing PDF/A could object to
    cropped = rgba.crop(box)
    flat = Image.new("RGB", cropped.size, (255, 255, 255))
    flat.paste(cropped, mask=cropped.getchannel("A"))
    return flat


def check_typed(text: str) -> str:
    value = " ".join(str(text or "").split())
    if len(value) < 2 or len(value) > MAX_TYPED or not value.isprintable():
        raise SignatureRefused(
            "typed_invalid",
            f"Saisissez votre nom pour signer (de 2 à {MAX_TYPED} caractères).",
        )
    return value


def typed_image(text: str) -> Image.Image:
    """The typed name drawn large, in ink blue on white, as the drawn signature is shown."""
    face = ImageFont.truetype(str(TYPED_FONT), 56)
    left, top, right, bottom = face.getbbox(text)
    image = Image.new("RGB", (right - left + 16, bottom - top + 16), (255, 255, 255))
    ImageDraw.Draw(image).text((8 - left, 8 - top), text, font=face, fill=(26, 35, 126))
    return image


# -- signing ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class MadeSignature:
    """The signed PDF and the certificate issued for this one signature."""

    data: bytes
    subject: str
    serial: str
    fingerprint: str


def _pyhanko_signer(
    key: rsa.RSAPrivateKey, cert: x509.Certificate, ca: SigningCA
) -> signers.SimpleSigner:
    der_key = key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    chain = [ca.cert, *ca.chain]
    return signers.SimpleSigner(
        signing_cert=asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER)),
        signing_key=asn1_keys.PrivateKeyInfo.load(der_key),
        cert_registry=SimpleCertificateStore.from_certs(
            [asn1_x509.Certificate.load(c.public_bytes(serialization.Encoding.DER)) for c in chain]
        ),
    )


def sign_in_browser_field(
    issued: bytes,
    *,
    expected_sha256: str,
    ca: SigningCA,
    signatory: Signatory,
    drawing: Image.Image | None = None,
    typed: str | None = None,
    reason: str = "Signature de la collectivité",
    location: str | None = None,
    tsa_url: str | None = None,
    time_zone: str = DEFAULT_ZONE,
    signing_time: datetime | None = None,
) -> MadeSignature:
    """Sign the exact issued PDF in `SignatureCollectivite` for `signatory`.

    The bytes must have the SHA-256 the service recorded at issue (`BrowserSigningFailed`
    otherwise). The key of the certificate issued for this signature is dropped on return."""
    if hashlib.sha256(issued).hexdigest() != expected_sha256:
        raise BrowserSigningFailed("the issued PDF does not match its recorded SHA-256")
    if (drawing is None) == (typed is None):
        raise BrowserSigningFailed("give either a drawing or a typed name")
    moment = (signing_time or datetime.now(UTC)).replace(microsecond=0)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    key, cert = issue_leaf(ca, signatory, now=moment)
    who = f"{signatory.name}, {signatory.title}" if signatory.title else signatory.name
    lines = [f"Signé électroniquement par {who}", stamp_moment(moment, time_zone)]
    font = GlyphAccumulatorFactory(str(STAMP_FONT))
    picture = drawing if drawing is not None else typed_image(typed or "")
    stamp = fields_stamp(
        text="\n".join(lines).replace("%", "%%"),  # pyHanko interpolates `%(…)s`
        font=font,
        background=images.PdfImage(picture),
    )
    timestamper = timestamps.HTTPTimeStamper(tsa_url, timeout=10) if tsa_url else None
    try:
        writer = _MetadataKeepingWriter(io.BytesIO(issued), strict=False)
        _align_metadata(writer, moment)
        empty = {name for name, _, _ in fields.enumerate_sig_fields(writer, filled_status=False)}
        if EMPLOYER_FIELD not in empty:
            raise BrowserSigningFailed(f"the issued PDF has no empty {EMPLOYER_FIELD} field")
        meta = signers.PdfSignatureMetadata(
            field_name=EMPLOYER_FIELD,
            md_algorithm="sha256",
            subfilter=SigSeedSubFilter.PADES,
            reason=reason,
            location=location,
            name=signatory.name,
            use_pades_lta=False,
        )
        pdf_signer = _TimedSigner(
            meta,
            signer=_pyhanko_signer(key, cert, ca),
            timestamper=timestamper,
            stamp_style=stamp,
            signing_time=moment,
        )
        out = io.BytesIO()
        pdf_signer.sign_pdf(writer, output=out)
        return MadeSignature(
            data=out.getvalue(),
            subject=cert.subject.rfc4514_string(),
            serial=format(cert.serial_number, "x"),
            fingerprint=hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest(),
        )
    except BrowserSigningFailed:
        raise
    except Exception as exc:
        if tsa_url and _is_timestamp_failure(exc):
            raise TimestampUnavailable(f"time-stamping authority failed: {exc}") from exc
        raise CountersignFailed(f"{type(exc).__name__}: {exc}") from exc
    finally:
        del key


def fields_stamp(
    *, text: str, font: GlyphAccumulatorFactory, background: images.PdfImage
) -> TextStampStyle:
    """The visible block: the signature's picture in the upper part, the sentence below it."""
    return TextStampStyle(
        stamp_text=text,
        text_box_style=TextBoxStyle(font=font, font_size=7),
        border_width=0,
        background=background,
        background_opacity=1.0,
        background_layout=SimpleBoxLayoutRule(
            x_align=AxisAlignment.ALIGN_MIN,
            y_align=AxisAlignment.ALIGN_MAX,
            margins=Margins(left=2, right=2, top=2, bottom=22),
            inner_content_scaling=InnerScaling.SHRINK_TO_FIT,
        ),
        inner_content_layout=SimpleBoxLayoutRule(
            x_align=AxisAlignment.ALIGN_MIN,
            y_align=AxisAlignment.ALIGN_MIN,
            margins=Margins(left=2, right=2, top=2, bottom=2),
        ),
    )
