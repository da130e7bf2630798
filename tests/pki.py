"""A real test PKI, built with `cryptography`: root, intermediate, and signers of every kind."""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID


def _name(cn: str, org: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "FR"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


@dataclass
class Party:
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate
    chain: list[x509.Certificate]

    def pkcs12(self, folder: Path, name: str) -> Path:
        path = folder / f"{name}.p12"
        path.write_bytes(
            pkcs12.serialize_key_and_certificates(
                name.encode(), self.key, self.cert, self.chain, serialization.NoEncryption()
            )
        )
        return path

    def signer(self):  # type: ignore[no-untyped-def]
        from pyhanko.sign import signers

        buffer = io.BytesIO(
            pkcs12.serialize_key_and_certificates(
                b"x", self.key, self.cert, self.chain, serialization.NoEncryption()
            )
        )
        import tempfile

        with tempfile.NamedTemporaryFile(suffix=".p12") as f:
            f.write(buffer.getvalue())
            f.flush()
            return signers.SimpleSigner.load_pkcs12(f.name, passphrase=None)


def _cert(
    subject: x509.Name,
    issuer: x509.Name,
    public_key,
    signing_key,
    *,
    ca: bool,
    start: datetime,
    end: datetime,
) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
    else:
        builder = builder.add_extension(
            x509.KeyUsage(True, True, False, False, False, False, False, False, False),
            critical=True,
        )
    return builder.sign(signing_key, hashes.SHA256())


@dataclass
class Pki:
    root: Party
    intermediate: Party
    trusted: Party
    untrusted: Party
    expired: Party
    #: an RSA signer (fixed-size signatures: poppler's pdfsig reserves room for exactly one)
    trusted_rsa: Party

    def roots_pem(self, folder: Path) -> Path:
        path = folder / "trust-roots.pem"
        path.write_bytes(self.root.cert.public_bytes(serialization.Encoding.PEM))
        return path


def build_pki() -> Pki:
    now = datetime.now(UTC)
    long = (now - timedelta(days=30), now + timedelta(days=3650))

    root_key = ec.generate_private_key(ec.SECP256R1())
    root_name = _name("Racine de test PSC", "Autorité de test")
    root = _cert(
        root_name, root_name, root_key.public_key(), root_key, ca=True, start=long[0], end=long[1]
    )
    inter_key = ec.generate_private_key(ec.SECP256R1())
    inter_name = _name("Intermédiaire de test PSC", "Autorité de test")
    inter = _cert(
        inter_name, root_name, inter_key.public_key(), root_key, ca=True, start=long[0], end=long[1]
    )

    def leaf(cn: str, org: str, start: datetime, end: datetime) -> Party:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _cert(
            _name(cn, org), inter_name, key.public_key(), inter_key, ca=False, start=start, end=end
        )
        return Party(key, cert, [inter, root])

    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    rsa_leaf = Party(
        rsa_key,  # type: ignore[arg-type]
        _cert(
            _name("Jeanne Martin", "Mairie d'Albi"),
            inter_name,
            rsa_key.public_key(),
            inter_key,
            ca=False,
            start=long[0],
            end=long[1],
        ),
        [inter, root],
    )
    other_key = ec.generate_private_key(ec.SECP256R1())
    other_name = _name("Autorité inconnue", "Ailleurs")
    other_ca = _cert(
        other_name,
        other_name,
        other_key.public_key(),
        other_key,
        ca=True,
        start=long[0],
        end=long[1],
    )
    untrusted_key = ec.generate_private_key(ec.SECP256R1())
    untrusted = Party(
        untrusted_key,
        _cert(
            _name("Jean Inconnu", "Mairie d'ailleurs"),
            other_name,
            untrusted_key.public_key(),
            other_key,
            ca=False,
            start=long[0],
            end=long[1],
        ),
        [other_ca],
    )
    return Pki(
        root=Party(root_key, root, []),
        intermediate=Party(inter_key, inter, [root]),
        trusted=leaf("Marie Dupont", "Mairie d'Albi", *long),
        untrusted=untrusted,
        expired=leaf(
            "Paul Ancien", "Mairie d'Albi", now - timedelta(days=800), now - timedelta(days=400)
        ),
        trusted_rsa=rsa_leaf,
    )


#: where the two contractual pieces' signature cells sit on their last page, in tests
EMPLOYER_BOX = (40.0, 70.0, 280.0, 135.0)
INSURER_BOX = (300.0, 70.0, 560.0, 135.0)


def signature_fields(data: bytes) -> dict[str, bool]:
    """Signature fields of a PDF, each with whether it is filled."""
    from pyhanko.pdf_utils.reader import PdfFileReader
    from pyhanko.sign import fields

    reader = PdfFileReader(io.BytesIO(data), strict=False)
    return {name: value is not None for name, value, _ in fields.enumerate_sig_fields(reader)}


def with_empty_signature_fields(data: bytes) -> bytes:
    """The issued piece with its two empty signature fields (the collectivité's and the
    insurer's), added in an incremental revision as a form tool would; unchanged when the piece
    already carries them (once rendering adds them itself)."""
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
    from pyhanko.sign import fields

    from signing.countersign import EMPLOYER_FIELD, INSURER_FIELD

    present = signature_fields(data)
    missing = [
        (name, box)
        for name, box in ((EMPLOYER_FIELD, EMPLOYER_BOX), (INSURER_FIELD, INSURER_BOX))
        if name not in present
    ]
    if not missing:
        return data
    writer = IncrementalPdfFileWriter(io.BytesIO(data), strict=False)
    last = int(writer.root["/Pages"]["/Count"]) - 1
    for name, box in missing:
        fields.append_signature_field(
            writer, fields.SigFieldSpec(sig_field_name=name, on_page=last, box=box)
        )
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def sign_pdf(
    data: bytes,
    party: Party,
    *,
    field: str = "SignatureCollectivite",
    name: str | None = None,
    certify: int | None = None,
    embedded_font: bool = True,
) -> bytes:
    """Sign as a real tool does: an incremental PAdES revision, with a visible stamp.

    An existing empty field named `field` is filled; otherwise one is added. `certify` (a DocMDP
    level: 1 no change, 2 form filling and signatures, 3 annotations too) makes it a
    certification signature. Without `embedded_font` the stamp uses a standard font that is not
    embedded (pyHanko's default Courier), as some tools do.
    """
    from pyhanko.pdf_utils.font.opentype import GlyphAccumulatorFactory
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
    from pyhanko.pdf_utils.text import TextBoxStyle
    from pyhanko.sign import fields, signers
    from pyhanko.sign.fields import MDPPerm, SigSeedSubFilter
    from pyhanko.stamp import TextStampStyle

    from signing.countersign import STAMP_FONT

    exists = field in signature_fields(data)
    writer = IncrementalPdfFileWriter(io.BytesIO(data), strict=False)
    meta = signers.PdfSignatureMetadata(
        field_name=field,
        md_algorithm="sha256",
        subfilter=SigSeedSubFilter.PADES,
        name=name,
        certify=certify is not None,
        docmdp_permissions=MDPPerm(certify or 2),
    )
    box_style = (
        TextBoxStyle(font=GlyphAccumulatorFactory(str(STAMP_FONT)), font_size=7)
        if embedded_font
        else TextBoxStyle(font_size=7)
    )
    stamp = TextStampStyle(stamp_text="Signé par %(signer)s\nle %(ts)s", text_box_style=box_style)
    out = io.BytesIO()
    signers.PdfSigner(
        meta,
        signer=party.signer(),
        stamp_style=stamp,
        new_field_spec=None
        if exists
        else fields.SigFieldSpec(sig_field_name=field, on_page=-1, box=EMPLOYER_BOX),
    ).sign_pdf(writer, output=out)
    return out.getvalue()


def sign_pdf_poppler(data: bytes, party: Party, *, field: str = "Signature_poppler") -> bytes:
    """Sign with another tool, poppler's `pdfsig -add-signature` (NSS), which adds its own
    field (poppler 22's `-sign` into an existing field is broken). Use an RSA `party`: poppler
    reserves room for one signature of the size it measured, which ECDSA's varying size
    overflows now and then."""
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        nss = f"sql:{folder}"
        p12 = party.pkcs12(folder, "signataire")
        subprocess.run(
            ["certutil", "-N", "-d", nss, "--empty-password"], check=True, capture_output=True
        )
        subprocess.run(
            ["pk12util", "-i", str(p12), "-d", nss, "-W", ""], check=True, capture_output=True
        )
        (folder / "in.pdf").write_bytes(data)
        subprocess.run(
            [
                "pdfsig",
                "-nssdir",
                nss,
                "-add-signature",
                "-new-signature-field-name",
                field,
                "-nick",
                "signataire",
                "-reason",
                "Lu et approuve",  # poppler 22 fails on non-ASCII reasons
                str(folder / "in.pdf"),
                str(folder / "out.pdf"),
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        return (folder / "out.pdf").read_bytes()
