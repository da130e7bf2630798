"""The CDG's public documents page (issue 12): no sign-in, the list, the steps, the convention."""

from __future__ import annotations

from typing import Any

from flask import Response, current_app, render_template
from werkzeug.exceptions import HTTPException

from service import labels
from service.backends import document_store
from service.downloads import stream_object
from service.formatting import long_date, plural
from service.pages.blueprint import bp
from service.published.domain import publication


def file_size(size: int) -> str:
    """`64 Ko`, `1,2 Mo`: what a person reads of a file's size."""
    if size < 1024 * 1024:
        return f"{max(1, round(size / 1024))}\u00a0Ko"
    return f"{size / (1024 * 1024):.1f}".replace(".", ",") + "\u00a0Mo"


bp.add_app_template_filter(long_date, "long_date_fr")


def served(path: str) -> bool:
    """Whether the application answers GET `path` (the online subscription form, issue 12, is
    another part's page: the link shows once that page is served)."""
    try:
        current_app.url_map.bind("localhost").match(path, method="GET")
    except HTTPException:
        return False
    return True


@bp.get("/cdg/<code>/documents")
def cdg_documents(code: str) -> Any:
    pub = publication(code, store=document_store())
    convention = pub.convention
    subscription = f"/cdg/{code}/souscription"
    return render_template(
        "published.html",
        pub=pub,
        cdg=pub.cdg,
        convention=convention,
        regime=labels.regime_wording(convention.regime),
        options=convention.options,
        duration=plural(convention.ends_on.year - convention.starts_on.year + 1, "an"),
        file_size=file_size,
        subscription_url=subscription if served(subscription) else None,
    )


@bp.get("/cdg/<code>/documents/<kind>")
def cdg_document(code: str, kind: str) -> Response:
    pub = publication(code, store=document_store())
    entry = pub.entry(kind)
    return stream_object(
        entry.key,
        entry.media_type,
        entry.filename(pub.convention.reference),
        entry.size,
    )
