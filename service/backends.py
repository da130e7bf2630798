"""Access to the configured backends (settings, object stores) from inside the app."""

from __future__ import annotations

import threading
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from flask import current_app

from service.archive.domain import ArchivePolicy
from service.config import Settings
from service.mail import outbox
from signing.countersign import SigningKey, load_pkcs12
from signing.devcert import create_dev_certificate
from signing.verify import TrustSettings
from storage import ObjectStore, StorageError, open_store


def settings() -> Settings:
    return current_app.extensions["psc.settings"]


def archive_store() -> ObjectStore:
    stores = current_app.extensions.setdefault("psc.stores", {})
    if "archive" not in stores:
        s = settings()
        store = open_store(s.archive_store, s3_endpoint_url=s.s3_endpoint_url)
        try:
            enforced = store.enforces_retention
        except Exception:  # unreachable now: the jobs will retry; say nothing false
            enforced = None
        if enforced is False:
            current_app.logger.warning(
                "ARCHIVE_STORE %s does not enforce retention (%s): archived copies are not "
                "protected by Object Lock",
                s.archive_store,
                "local folder, retention emulated"
                if s.archive_store.startswith("file:")
                else "bucket without Object Lock",
            )
        stores["archive"] = store
    return stores["archive"]


def archive_policy() -> ArchivePolicy:
    s = settings()
    return ArchivePolicy(
        lock_mode=s.archive_lock_mode,
        retention_years=s.archive_retention_years,
        timezone=s.timezone,
    )


def run_archive_jobs(kit_id: int | None = None) -> tuple[int, int]:
    """Run due archive jobs now; storage failures leave them pending, never raise."""
    from service.archive.domain import run_pending

    try:
        return run_pending(
            documents=document_store(),
            archive=archive_store(),
            policy=archive_policy(),
            kit_id=kit_id,
        )
    except StorageError:
        current_app.logger.warning("archive store unavailable: jobs stay pending")
        return 0, 0


def document_store() -> ObjectStore:
    stores = current_app.extensions.setdefault("psc.stores", {})
    if "documents" not in stores:
        s = settings()
        stores["documents"] = open_store(s.document_store, s3_endpoint_url=s.s3_endpoint_url)
    return stores["documents"]


_signing_lock = threading.Lock()


def signing_key() -> SigningKey:
    """The insurer's countersigning key: SIGNING_PKCS12, else the instance's development key."""
    cache = current_app.extensions.setdefault("psc.signing", {})
    with _signing_lock:
        return _load_signing_key(cache)


def _load_signing_key(cache: dict) -> SigningKey:  # type: ignore[type-arg]
    if "key" not in cache:
        s = settings()
        if s.signing_pkcs12:
            cache["key"] = load_pkcs12(s.signing_pkcs12, s.signing_pkcs12_passphrase)
        else:
            path = create_dev_certificate(dev_certificate_path())
            current_app.logger.warning(
                "countersigning with the DEVELOPMENT certificate %s: set SIGNING_PKCS12", path
            )
            cache["key"] = load_pkcs12(path, None)
    return cache["key"]


def dev_certificate_path() -> Path:
    return settings().instance_path / "signing" / "dev-countersign.p12"


def trust_settings() -> TrustSettings:
    cache = current_app.extensions.setdefault("psc.signing", {})
    if "trust" not in cache:
        key = signing_key()
        s = settings()
        roots: tuple[bytes, ...] = ()
        if s.signing_trust_roots:
            pem = Path(s.signing_trust_roots).read_bytes()
            roots = tuple(
                c.public_bytes(serialization.Encoding.DER)
                for c in x509.load_pem_x509_certificates(pem)
            )
        cache["trust"] = TrustSettings(
            roots=roots,
            forbidden_fingerprints=frozenset({key.fingerprint}),
            allow_fetching=s.signing_allow_fetching,
        )
    return cache["trust"]


def send_mail(to: str, subject: str, body: str, *, kit_id: int | None = None) -> bool:
    """Send now; a failure is logged and recorded in the audit trail, never raised."""
    from service.audit.domain import record
    from service.extensions import db

    try:
        outbox.send(settings().mail_url, outbox.build(to, subject, body))
    except Exception as exc:  # the business action already happened: report, do not undo
        current_app.logger.exception("mail to %s failed", to)
        record(
            "email_failed",
            actor="system",
            kit_id=kit_id,
            details={"to": to, "subject": subject, "error": type(exc).__name__},
        )
        db.session.commit()
        return False
    record("email_sent", actor="system", kit_id=kit_id, details={"to": to, "subject": subject})
    db.session.commit()
    return True
