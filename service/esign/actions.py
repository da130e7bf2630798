"""What the API and the pages both do to sign in the browser (the backends gathered here)."""

from __future__ import annotations

from service import labels
from service.accounts.auth import Principal
from service.backends import browser_signing_ca, document_store, settings, trust_settings
from service.esign import domain
from service.esign.models import SigningRequest
from service.kits.models import Kit
from service.returns.domain import ReturnContext, UploadQuota
from service.returns.models import KitReturn


def context() -> domain.BrowserContext:
    s = settings()
    return domain.BrowserContext(
        returns=ReturnContext(
            store=document_store(),
            trust=trust_settings(),
            max_bytes=s.max_upload_mb * 1024 * 1024,
            quota=UploadQuota(uploads=s.upload_quota_count, bytes=s.upload_quota_mb * 1024 * 1024),
        ),
        ca=browser_signing_ca(),
        secret=s.secret_key,
        tsa_url=s.signing_tsa_url,
        zone=labels.zone().key,
    )


def send_code(kit: Kit, kind: str, *, principal: Principal, address: str | None) -> SigningRequest:
    return domain.request_code(
        kit, kind, principal=principal, address=address, secret=settings().secret_key
    )


def sign(
    kit: Kit,
    kind: str,
    *,
    code: str,
    consent: bool,
    signature: domain.SignatureGiven,
    principal: Principal,
    address: str | None,
    user_agent: str | None,
) -> KitReturn:
    return domain.confirm(
        kit,
        kind,
        code=code,
        consent=consent,
        signature=signature,
        principal=principal,
        address=address,
        user_agent=user_agent,
        ctx=context(),
    )
