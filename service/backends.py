"""Access to the configured backends (settings, object stores) from inside the app."""

from __future__ import annotations

from flask import current_app

from service.config import Settings
from storage import ObjectStore, open_store


def settings() -> Settings:
    return current_app.extensions["psc.settings"]


def document_store() -> ObjectStore:
    stores = current_app.extensions.setdefault("psc.stores", {})
    if "documents" not in stores:
        s = settings()
        stores["documents"] = open_store(s.document_store, s3_endpoint_url=s.s3_endpoint_url)
    return stores["documents"]
