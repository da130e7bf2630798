"""Access to the configured backends (settings, object stores) from inside the app."""

from __future__ import annotations

import threading
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from flask import current_app

from service.config import settings
from signing.browser import SigningCA, create_dev_ca, load_ca
from signing.countersign import SigningKey, load_pkcs12
from signing.devcert import create_dev_certificate
from signing.verify import TrustSettings
from storage import ObjectStore, Timeouts, open_store


def store_timeouts() -> Timeouts:
    """STORE_CONNECT_TIMEOUT, STORE_READ_TIMEOUT, STORE_MAX_ATTEMPTS: every call to a store."""
    s = settings()
    return Timeouts(
        connect=s.store_connect_timeout, read=s.store_read_timeout, attempts=s.store_max_attempts
    )


def _quick(seconds: float) -> Timeouts:
    """One attempt, each wait bounded by `seconds`: for answers a person is waiting for."""
    return Timeouts(
        connect=min(seconds, settings().store_connect_timeout), read=seconds, attempts=1
    )


def _store(name: str, url: str, timeouts: Timeouts) -> ObjectStore:
    stores = current_app.extensions.setdefault("psc.stores", {})
    if name not in stores:
        stores[name] = open_store(
            url, s3_endpoint_url=settings().s3_endpoint_url, timeouts=timeouts
        )
    return stores[name]


def archive_store() -> ObjectStore:
    stores = current_app.extensions.setdefault("psc.stores", {})
    if "archive" not in stores:
        s = settings()
        store = open_store(
            s.archive_store, s3_endpoint_url=s.s3_endpoint_url, timeouts=store_timeouts()
        )
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


def health_stores() -> dict[str, ObjectStore]:
    """The stores as the health check sees them: one attempt, HEALTH_TIMEOUT each."""
    s = settings()
    quick = _quick(s.health_timeout)
    return {
        "documents": _store("documents-health", s.document_store, quick),
        "archive": _store("archive-health", s.archive_store, quick),
    }


def document_store() -> ObjectStore:
    return _store("documents", settings().document_store, store_timeouts())


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
        # the browser-signing CA certifies only signatures the service made itself (hF)
        roots = (*roots, browser_signing_ca().root_der)
        cache["trust"] = TrustSettings(
            roots=roots,
            forbidden_fingerprints=frozenset({key.fingerprint}),
            allow_fetching=s.signing_allow_fetching,
        )
    return cache["trust"]


# -- signing in the browser (hF) ------------------------------------------------------------


def browser_signing_ca() -> SigningCA:
    """BROWSER_SIGNING_CA_PKCS12, else the instance's development CA (created once)."""
    cache = current_app.extensions.setdefault("psc.signing", {})
    with _signing_lock:
        if "browser-ca" not in cache:
            s = settings()
            if s.browser_signing_ca_pkcs12:
                cache["browser-ca"] = load_ca(
                    s.browser_signing_ca_pkcs12, s.browser_signing_ca_passphrase
                )
            else:
                path = create_dev_ca(s.instance_path / "signing" / "dev-browser-ca.p12")
                current_app.logger.warning(
                    "browser signatures certified by the DEVELOPMENT CA %s: "
                    "set BROWSER_SIGNING_CA_PKCS12",
                    path,
                )
                cache["browser-ca"] = load_ca(path, None)
        return cache["browser-ca"]  # type: ignore[no-any-return]
