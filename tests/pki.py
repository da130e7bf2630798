"""A real test PKI, built with `cryptography`: root, intermediate, and signers of every kind."""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
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
    )


def sign_pdf(
    data: bytes, party: Party, *, field: str = "Signature_collectivite", name: str | None = None
) -> bytes:
    """Sign as a real tool does: an incremental PAdES revision, with a visible stamp."""
    from pyhanko.pdf_utils.font.opentype import GlyphAccumulatorFactory
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
    from pyhanko.pdf_utils.text import TextBoxStyle
    from pyhanko.sign import fields, signers
    from pyhanko.sign.fields import SigSeedSubFilter
    from pyhanko.stamp import TextStampStyle

    from signing.countersign import STAMP_FONT

    writer = IncrementalPdfFileWriter(io.BytesIO(data), strict=False)
    meta = signers.PdfSignatureMetadata(
        field_name=field, md_algorithm="sha256", subfilter=SigSeedSubFilter.PADES, name=name
    )
    stamp = TextStampStyle(
        stamp_text="Signé par %(signer)s\nle %(ts)s",
        text_box_style=TextBoxStyle(font=GlyphAccumulatorFactory(str(STAMP_FONT)), font_size=7),
    )
    out = io.BytesIO()
    signers.PdfSigner(
        meta,
        signer=party.signer(),
        stamp_style=stamp,
        new_field_spec=fields.SigFieldSpec(
            sig_field_name=field, on_page=-1, box=(40, 70, 280, 135)
        ),
    ).sign_pdf(writer, output=out)
    return out.getvalue()
